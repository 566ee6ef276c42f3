"""Prometheus metrics of one router app, on a registry the app owns.

Nothing is registered globally: `RouterMetrics` registers one collector on the
`CollectorRegistry` it is given, so two apps in one process (as in the tests) never
collide. The hot path only bumps plain numbers in dictionaries (the app runs on one event
loop thread, and scrapes run on the same loop); the collector turns them into metric
families when scraped. prometheus-client's own metric objects take a lock and resolve
labels on every update, which cost more than the rest of a proxied request's bookkeeping.

=========================================================  =======================================
``llmservice_router_requests_total{route,code,model}``     requests answered
``llmservice_router_errors_total{cause}``                  failures by cause (see errors.py)
``llmservice_router_request_duration_seconds{route}``      request to last byte
``llmservice_router_time_to_first_byte_seconds{route}``    request to first upstream body byte
``llmservice_router_tokens_total{kind}``                   prompt / completion tokens (usage)
``llmservice_router_in_flight{replica}``                   requests on each replica now
``llmservice_router_retries_total{reason}``                retries on another replica
``llmservice_router_retries_refused_total{reason}``        retries not made: attempts, budget,
                                                           no_replica
``llmservice_router_upstream_attempts_total{outcome}``     attempts: answered, 5xx, connect,
                                                           connect_timeout, reset, stale
``llmservice_router_ejections_total{replica,reason}``      outlier ejections (outliers.py)
``llmservice_router_ejected{replica}``                     1 while ejected (outliers.py)
``llmservice_router_session_routing_total{key,outcome}``   key kind; primary replica or spilled
``llmservice_router_replicas{state}``                      routable / draining replicas
``llmservice_router_placement_shared``                     1 while sessions are placed as other
                                                           router replicas place them (sticky.py)
``llmservice_router_peer_placements_total{event}``         placements sent to peers, adopted
                                                           from them, refused (peers.py)
``llmservice_router_peers``                                peer router replicas (peers.py)
=========================================================  =======================================
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

__all__ = ["LATENCY_BUCKETS", "RouterMetrics"]

PREFIX = "llmservice_router"
LATENCY_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
)  # fmt: skip


class _Histogram:
    __slots__ = ("buckets", "count", "total")

    def __init__(self) -> None:
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)  # the last one is +Inf
        self.count = 0
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.buckets[bisect.bisect_left(LATENCY_BUCKETS, value)] += 1
        self.count += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, float]]:
        out, running = [], 0
        for bound, hits in zip((*LATENCY_BUCKETS, float("inf")), self.buckets, strict=True):
            running += hits
            out.append(("+Inf" if bound == float("inf") else repr(bound), float(running)))
        return out


class RouterMetrics(Collector):
    """The router's metrics, collected into ``registry``.

    ``in_flight`` is read at scrape time (the proxy's per-replica counters), so keeping it
    current costs nothing per request.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        in_flight: Callable[[], Mapping[str, int]] = dict,
    ) -> None:
        self.registry = registry
        self.in_flight = in_flight
        self.requests: dict[tuple[str, str, str], int] = {}
        self.errors: dict[str, int] = {}
        self.retries: dict[str, int] = {}
        self.attempts: dict[str, int] = {}
        self.retries_refused: dict[str, int] = {}
        self.session_routing: dict[tuple[str, str], int] = {}
        self.tokens = {"prompt": 0, "completion": 0}
        self.duration: dict[str, _Histogram] = {}
        self.first_byte: dict[str, _Histogram] = {}
        self.replicas = {"routable": 0, "draining": 0}
        # Read at scrape time; None under a strategy without sessions (no such gauge).
        self.placement_shared: Callable[[], bool] | None = None
        registry.register(self)

    # -- hot path -----------------------------------------------------------------------

    def observe_request(
        self, route: str, code: int, model: str, duration: float, first_byte: float | None
    ) -> None:
        key = (route, str(code), model)
        self.requests[key] = self.requests.get(key, 0) + 1
        histogram = self.duration.get(route) or self.duration.setdefault(route, _Histogram())
        histogram.observe(duration)
        if first_byte is not None:
            histogram = self.first_byte.get(route) or self.first_byte.setdefault(
                route, _Histogram()
            )
            histogram.observe(first_byte)

    def error(self, cause: str) -> None:
        self.errors[cause] = self.errors.get(cause, 0) + 1

    def retry(self, reason: str) -> None:
        self.retries[reason] = self.retries.get(reason, 0) + 1

    def retry_refused(self, reason: str) -> None:
        self.retries_refused[reason] = self.retries_refused.get(reason, 0) + 1

    def attempt(self, outcome: str) -> None:
        self.attempts[outcome] = self.attempts.get(outcome, 0) + 1

    def routed(self, key_kind: str, primary: bool) -> None:
        key = (key_kind, "primary" if primary else "spilled")
        self.session_routing[key] = self.session_routing.get(key, 0) + 1

    def add_tokens(self, prompt: int, completion: int) -> None:
        self.tokens["prompt"] += prompt
        self.tokens["completion"] += completion

    def set_replicas(self, routable: int, draining: int) -> None:
        self.replicas["routable"], self.replicas["draining"] = routable, draining

    # -- scrape -------------------------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            f"{PREFIX}_requests", "Requests answered.", labels=["route", "code", "model"]
        )
        for labels, value in self.requests.items():
            requests.add_metric(list(labels), value)
        yield requests
        yield self._counter("errors", "Failed requests by cause.", "cause", self.errors)
        yield self._counter("retries", "Retries on another replica.", "reason", self.retries)
        yield self._counter(
            "retries_refused",
            "Failed attempts not retried: per-request limit (attempts), retry budget (budget),"
            " or no other replica could take the request (no_replica).",
            "reason",
            self.retries_refused,
        )
        yield self._counter(
            "upstream_attempts",
            "Attempts to reach an engine replica, by outcome (stale: a pooled connection the"
            " engine had closed).",
            "outcome",
            self.attempts,
        )
        yield self._counter("tokens", "Tokens reported in usage.", "kind", self.tokens)
        routing = CounterMetricFamily(
            f"{PREFIX}_session_routing",
            "Routed requests by key kind and whether the key's primary replica took them.",
            labels=["key", "outcome"],
        )
        for pair, value in self.session_routing.items():
            routing.add_metric(list(pair), value)
        yield routing
        yield self._histogram("request_duration_seconds", "Request to last byte.", self.duration)
        yield self._histogram(
            "time_to_first_byte_seconds",
            "Request to the first upstream body byte (time to first token when streaming).",
            self.first_byte,
        )
        in_flight = GaugeMetricFamily(
            f"{PREFIX}_in_flight", "Requests in flight per replica.", labels=["replica"]
        )
        for replica, value in sorted(self.in_flight().items()):
            in_flight.add_metric([replica], value)
        yield in_flight
        replicas = GaugeMetricFamily(f"{PREFIX}_replicas", "Replicas by state.", labels=["state"])
        for state, value in self.replicas.items():
            replicas.add_metric([state], value)
        yield replicas
        if self.placement_shared is not None:
            yield GaugeMetricFamily(
                f"{PREFIX}_placement_shared",
                "1 while new sessions are placed as other router replicas place them.",
                value=float(self.placement_shared()),
            )

    @staticmethod
    def _counter(name: str, doc: str, label: str, values: Mapping[str, int]) -> Metric:
        family = CounterMetricFamily(f"{PREFIX}_{name}", doc, labels=[label])
        for key, value in values.items():
            family.add_metric([key], value)
        return family

    @staticmethod
    def _histogram(name: str, doc: str, values: Mapping[str, _Histogram]) -> Metric:
        family = HistogramMetricFamily(f"{PREFIX}_{name}", doc, labels=["route"])
        for route, histogram in values.items():
            family.add_metric([route], histogram.cumulative(), histogram.total)
        return family

    def render(self) -> bytes:
        return generate_latest(self.registry)
