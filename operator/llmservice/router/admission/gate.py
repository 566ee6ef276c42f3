"""Throughput-gated dispatch: no new request for a replica whose running requests crawl.

With a floor of ``min_tokens_per_second`` set, a replica is *closed* while the decode rate
each of its running requests gets, ``generation tokens per second / requests running``, is
below the floor, and *open* again once it is back at or above it. A closed replica gets no new
requests from the queue or the fast path; its running requests finish, the rate of the rest
rises, and it opens. A replica with nothing running is open.

An open replica does not take the whole queue at once, which would sink it far below the
floor before the next measurement: until the next sample it takes at most its *allowance*,
``floor(throughput / min_tokens_per_second) - running`` more requests (at least one), the
number that would still get the floor if the replica's total throughput stayed as measured.
Total throughput grows with the batch on a real engine, so this errs on the side of the
floor, and the next sample corrects it.

The rate is measured from the engine's own counters (``vllm:generation_tokens_total`` and
``vllm:num_requests_running`` on its ``/metrics``), not from what the router sees, because:

- the engine counts every token it generates, streaming or not; the router sees a
  non-streaming completion only when it is over, and an SSE chunk is not always one token
  (``stream_interval``, several tokens per event with speculative decoding);
- the rate a request gets depends on the whole batch, and the batch holds the requests of
  every router replica (the router runs two by default), which no single router sees;
- the engine's view is one cheap scrape per replica per interval, off the request path, so
  the gate costs nothing per request.

Each scrape gives the counter and the gauge; the rate is taken between two consecutive
scrapes (a restarted engine, whose counter went backwards, starts a new baseline). Pure: the
scraper (`llmservice.router.admission.scraper`) passes the samples and the time.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

__all__ = ["EngineSample", "ThroughputGate", "parse_engine_metrics"]

_TOKENS = "vllm:generation_tokens_total"
_RUNNING = "vllm:num_requests_running"
# A sample line: the metric name, then "{" when a label set follows.
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{)?")


@dataclass(frozen=True, slots=True)
class EngineSample:
    """What one scrape of an engine's /metrics says: tokens generated so far, requests running."""

    generation_tokens: float
    running: float


def parse_engine_metrics(text: str) -> EngineSample | None:
    """The two series from Prometheus text (summed over their label sets), or None if absent."""
    totals: dict[str, float] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None or match[1] not in (_TOKENS, _RUNNING):
            continue
        # The value follows the name, or the label set when there is one.
        rest = line[line.rindex("}") + 1 :] if match[2] else line[match.end(1) :]
        try:
            value = float(rest.split()[0])
        except (ValueError, IndexError):
            continue
        totals[match[1]] = totals.get(match[1], 0.0) + value
    if _TOKENS not in totals or _RUNNING not in totals:
        return None
    return EngineSample(totals[_TOKENS], totals[_RUNNING])


@dataclass(slots=True)
class _Replica:
    at: float
    tokens: float
    running: float = 0.0
    closed: bool = False
    rate: float | None = None  # per running request
    throughput: float | None = None  # the replica's, the last time something ran


class ThroughputGate:
    """Which replicas are closed, from successive engine samples."""

    def __init__(self, min_tokens_per_second: float) -> None:
        if not min_tokens_per_second > 0:
            raise ValueError("the floor must be positive")
        self.floor = min_tokens_per_second
        self._replicas: dict[str, _Replica] = {}

    def closed(self, replica: str) -> bool:
        state = self._replicas.get(replica)
        return state is not None and state.closed

    def rate(self, replica: str) -> float | None:
        """The last decode rate per running request measured on ``replica``, if any."""
        state = self._replicas.get(replica)
        return None if state is None else state.rate

    def allowance(self, replica: str) -> int | None:
        """New requests ``replica`` may take until the next sample; None: no measure yet."""
        state = self._replicas.get(replica)
        if state is None or state.throughput is None:
            return None
        if state.closed:
            return 0
        return max(1, math.floor(state.throughput / self.floor - state.running))

    def observe(self, replica: str, now: float, sample: EngineSample) -> bool:
        """Record a scrape of ``replica`` at ``now``; True when it opened or closed."""
        state = self._replicas.get(replica)
        if state is None:
            self._replicas[replica] = _Replica(now, sample.generation_tokens, sample.running)
            return False
        elapsed = now - state.at
        produced = sample.generation_tokens - state.tokens
        state.at, state.tokens, state.running = now, sample.generation_tokens, sample.running
        if elapsed <= 0 or produced < 0:  # no time passed, or the engine restarted
            return False
        was = state.closed
        if sample.running < 1:
            state.rate = None
            state.closed = False
        else:
            state.throughput = produced / elapsed
            state.rate = state.throughput / sample.running
            state.closed = state.rate < self.floor
        return state.closed != was

    def forget(self, replica: str) -> bool:
        """Drop a replica that left; True if it was closed."""
        state = self._replicas.pop(replica, None)
        return state is not None and state.closed
