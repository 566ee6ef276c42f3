"""Throughput from the engines' vLLM counters.

Each scrape reads `vllm:request_success_total`, `vllm:prompt_tokens_total` and
`vllm:generation_tokens_total` from every ready engine Pod. Rates are taken per Pod between
two scrapes and summed; a counter that went down means the engine restarted, so its whole
current value is the increase (as Prometheus' `rate()` treats resets). The status is written
at most every `min_write_interval` seconds and only when the rate changed meaningfully.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import httpx
from prometheus_client.parser import text_string_to_metric_families

COUNTERS = {
    "vllm:request_success": "requests",
    "vllm:prompt_tokens": "prompt_tokens",
    "vllm:generation_tokens": "generation_tokens",
}
SCRAPE_TIMEOUT_SECONDS = 2.0
MEANINGFUL_CHANGE = 0.1  # relative change that is worth a status write


@dataclass(frozen=True)
class Sample:
    """One Pod's counters at one moment."""

    at: float
    requests: float = 0.0
    prompt_tokens: float = 0.0
    generation_tokens: float = 0.0


@dataclass(frozen=True)
class Rates:
    requests_per_second: float = 0.0
    prompt_tokens_per_second: float = 0.0
    generation_tokens_per_second: float = 0.0
    window_seconds: float = 0.0

    def meaningfully_different(self, other: Rates | None) -> bool:
        if other is None:
            return True
        for mine, theirs in (
            (self.requests_per_second, other.requests_per_second),
            (self.prompt_tokens_per_second, other.prompt_tokens_per_second),
            (self.generation_tokens_per_second, other.generation_tokens_per_second),
        ):
            if (mine == 0) != (theirs == 0):
                return True
            if max(mine, theirs) > 0 and abs(mine - theirs) / max(mine, theirs) > MEANINGFUL_CHANGE:
                return True
        return False


def parse_sample(text: str, at: float) -> Sample:
    """Sum each counter over its label sets (e.g. every `finished_reason`)."""
    totals = dict.fromkeys(COUNTERS.values(), 0.0)
    # Matched by sample name: how the TYPE line names the family varies between exporters.
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            target = COUNTERS.get(sample.name.removesuffix("_total"))
            if target is not None and sample.name.endswith("_total"):
                totals[target] += sample.value
    return Sample(at=at, **totals)


def _increase(previous: float, current: float) -> float:
    return current if current < previous else current - previous


def rates_between(previous: Mapping[str, Sample], current: Mapping[str, Sample]) -> Rates | None:
    """Summed per-second rates of Pods seen in both scrapes; None when none were."""
    common = [pod for pod in current if pod in previous]
    if not common:
        return None
    window = max(current[pod].at - previous[pod].at for pod in common)
    if window <= 0:
        return None
    totals = {"requests": 0.0, "prompt_tokens": 0.0, "generation_tokens": 0.0}
    for pod in common:
        before, after = previous[pod], current[pod]
        elapsed = after.at - before.at
        if elapsed <= 0:
            continue
        for name in totals:
            totals[name] += _increase(getattr(before, name), getattr(after, name)) / elapsed
    return Rates(
        requests_per_second=round(totals["requests"], 2),
        prompt_tokens_per_second=round(totals["prompt_tokens"], 1),
        generation_tokens_per_second=round(totals["generation_tokens"], 1),
        window_seconds=round(window, 1),
    )


@dataclass
class ServiceThroughput:
    """Scrape history and the last written rates of one LLMService."""

    samples: dict[str, Sample] = field(default_factory=dict)
    last_scrape: float = float("-inf")
    written: Rates | None = None
    written_at: float = float("-inf")
    pending: Rates | None = None


class ThroughputTracker:
    """Scrapes engine Pods on a schedule and decides when the status should change."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        scrape_interval: float = 15.0,
        min_write_interval: float = 30.0,
        on_scrape: Callable[[str, str, int, int], None] | None = None,
    ) -> None:
        """`on_scrape(namespace, name, attempted, failed)` hears of every round of scrapes."""
        self._http = http
        self._on_scrape = on_scrape
        self._scrape_interval = scrape_interval
        self._min_write_interval = min_write_interval
        self._services: dict[tuple[str, str], ServiceThroughput] = {}

    def forget(self, namespace: str, name: str) -> None:
        self._services.pop((namespace, name), None)

    async def _scrape(self, url: str, at: float) -> Sample | None:
        try:
            response = await self._http.get(url, timeout=SCRAPE_TIMEOUT_SECONDS)
            response.raise_for_status()
        except httpx.HTTPError:
            return None
        return parse_sample(response.text, at)

    async def observe(
        self, namespace: str, name: str, targets: Iterable[tuple[str, str]], now: float
    ) -> Rates | None:
        """Scrape if due; return the rates to write now, or None to leave the status alone.

        `targets` are (pod name, metrics URL) of the ready engine Pods.
        """
        state = self._services.setdefault((namespace, name), ServiceThroughput())
        if now - state.last_scrape >= self._scrape_interval:
            state.last_scrape = now
            targets = list(targets)
            results = await asyncio.gather(*(self._scrape(url, now) for _, url in targets))
            current = {pod: s for (pod, _), s in zip(targets, results, strict=True) if s}
            if self._on_scrape is not None and targets:
                self._on_scrape(namespace, name, len(targets), len(targets) - len(current))
            rates = rates_between(state.samples, current)
            state.samples = current
            if not targets:
                rates = Rates()
            if rates is not None:
                state.pending = rates
        due = now - state.written_at >= self._min_write_interval
        if (
            state.pending is not None
            and due
            and state.pending.meaningfully_different(state.written)
        ):
            state.written, state.written_at = state.pending, now
            return state.pending
        return None

    def restore(self, namespace: str, name: str, rates: Rates | None) -> None:
        """Seed the last written rates from the live status (e.g. after a restart)."""
        state = self._services.setdefault((namespace, name), ServiceThroughput())
        if state.written is None:
            state.written = rates
