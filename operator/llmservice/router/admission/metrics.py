"""Admission metrics, a collector of their own on the app's registry.

===================================================  ============================================
``llmservice_router_rejected_total{reason,key}``     429s by limit (the error's ``code``) and key
``llmservice_router_queued{key}``                    requests waiting in the router's queue now
``llmservice_router_queue_wait_seconds{key}``        time from arrival to a slot, admitted requests
``llmservice_router_key_tokens_total{key,kind}``     prompt / completion tokens by key
``llmservice_router_in_flight_limit{replica}``       each replica's cap (absent without a cap)
``llmservice_router_replica_closed{replica}``        1 while the throughput gate holds it closed,
                                                     0 while open (absent without a gate)
===================================================  ============================================

``key`` is the API key's name (``anonymous`` without keys), never the key. As in
`llmservice.router.metrics`, the request path only bumps numbers in dictionaries; the
families are built when scraped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from llmservice.router.metrics import PREFIX, _Histogram

__all__ = ["AdmissionMetrics"]

Pairs = Callable[[], Iterable[tuple[str, int]]]


def _nothing() -> Iterable[tuple[str, int]]:
    return ()


class AdmissionMetrics(Collector):
    """Counters bumped by the app; gauges read at scrape time from the dispatcher."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.rejected: dict[tuple[str, str], int] = {}
        self.key_tokens: dict[tuple[str, str], int] = {}
        self.queue_wait: dict[str, _Histogram] = {}
        self.queued: Pairs = _nothing
        self.limits: Pairs = _nothing
        self.closed: Pairs = _nothing
        registry.register(self)

    def reject(self, reason: str, key: str) -> None:
        pair = (reason, key)
        self.rejected[pair] = self.rejected.get(pair, 0) + 1

    def waited(self, key: str, seconds: float) -> None:
        histogram = self.queue_wait.get(key)
        if histogram is None:
            histogram = self.queue_wait[key] = _Histogram()
        histogram.observe(seconds)

    def add_tokens(self, key: str, prompt: int, completion: int) -> None:
        if prompt:
            pair = (key, "prompt")
            self.key_tokens[pair] = self.key_tokens.get(pair, 0) + prompt
        if completion:
            pair = (key, "completion")
            self.key_tokens[pair] = self.key_tokens.get(pair, 0) + completion

    def collect(self) -> Iterator[Metric]:
        rejected = CounterMetricFamily(
            f"{PREFIX}_rejected",
            "Requests refused with 429, by the limit that refused them and the API key's name.",
            labels=["reason", "key"],
        )
        for pair, value in self.rejected.items():
            rejected.add_metric(list(pair), value)
        yield rejected
        queued = GaugeMetricFamily(
            f"{PREFIX}_queued", "Requests waiting in the router's queue.", labels=["key"]
        )
        for key, count in self.queued():
            queued.add_metric([key], count)
        yield queued
        wait = HistogramMetricFamily(
            f"{PREFIX}_queue_wait_seconds",
            "Time from arrival until a replica slot, of requests given one.",
            labels=["key"],
        )
        for key, histogram in self.queue_wait.items():
            wait.add_metric([key], histogram.cumulative(), histogram.total)
        yield wait
        tokens = CounterMetricFamily(
            f"{PREFIX}_key_tokens",
            "Tokens reported in usage, by API key name.",
            labels=["key", "kind"],
        )
        for pair, value in self.key_tokens.items():
            tokens.add_metric(list(pair), value)
        yield tokens
        limit = GaugeMetricFamily(
            f"{PREFIX}_in_flight_limit",
            "The most requests a replica may have in flight from this router.",
            labels=["replica"],
        )
        for replica, cap in self.limits():
            limit.add_metric([replica], cap)
        yield limit
        closed = GaugeMetricFamily(
            f"{PREFIX}_replica_closed",
            "1 while the throughput gate sends a replica no new requests.",
            labels=["replica"],
        )
        for replica, shut in self.closed():
            closed.add_metric([replica], shut)
        yield closed
