"""Load signals in the router and engine Pods' Prometheus text, parsed without I/O.

From a router: requests on the engines now (`llmservice_router_in_flight`, per replica),
requests waiting in its queue (`llmservice_router_queued`, per key, present once the router
queues) and requests answered so far (`llmservice_router_requests_total`, API routes only:
probes and scrapes are not counted, a 503 at zero replicas is). From an engine: the share of
its KV cache in use (`vllm:kv_cache_usage_perc`, a fraction despite the name; older vLLM
called it `vllm:gpu_cache_usage_perc`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

__all__ = ["RouterLoad", "kv_cache_usage", "new_requests", "router_load"]

IN_FLIGHT = "llmservice_router_in_flight"
QUEUED = "llmservice_router_queued"
REQUESTS = "llmservice_router_requests_total"
KV_CACHE_USAGE = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")


@dataclass(frozen=True)
class RouterLoad:
    """One router's gauges and counter at one scrape."""

    in_flight: float = 0.0
    queued: float = 0.0
    requests: float = 0.0


def router_load(text: str) -> RouterLoad:
    """Sums over label sets (replicas, keys, routes and codes)."""
    totals = {IN_FLIGHT: 0.0, QUEUED: 0.0, REQUESTS: 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in totals:
                totals[sample.name] += sample.value
    return RouterLoad(totals[IN_FLIGHT], totals[QUEUED], totals[REQUESTS])


def kv_cache_usage(text: str) -> float | None:
    """The engine's KV-cache usage, 0 to 1; None when it does not report one."""
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name in KV_CACHE_USAGE:
                    return float(sample.value)
    except ValueError:  # not Prometheus text
        return None
    return None


def new_requests(previous: Mapping[str, RouterLoad], current: Mapping[str, RouterLoad]) -> float:
    """Requests answered between two scrapes, over the routers seen in both.

    A counter that went down means the router restarted: its whole value is new (as
    Prometheus' `rate()` reads resets). A router seen for the first time has no baseline
    and counts nothing: its in-flight and queued gauges still show demand.
    """
    total = 0.0
    for pod, now in current.items():
        before = previous.get(pod)
        if before is None:
            continue
        total += now.requests if now.requests < before.requests else now.requests - before.requests
    return total
