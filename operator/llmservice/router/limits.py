"""Per-request deadlines and the retry budget shared by all requests.

`Watchdog` keeps one timer per request for the total deadline and the limit of the current
phase (first byte, then idle gaps); `RetryBudget` caps retries to a fraction of recent
traffic. Both take their clock from the caller, so tests can drive them.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any

from llmservice.router.config import RetryPolicy

__all__ = ["TIMEOUT_MESSAGES", "RetryBudget", "Watchdog"]


class RetryBudget:
    """Allows retries up to a ratio of recent requests, plus a small steady allowance.

    Counts live in one-second buckets over ``policy.budget_window`` seconds, so the state is
    a fixed few integers however high the request rate.
    """

    def __init__(self, policy: RetryPolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self._policy = policy
        self._clock = clock
        self._size = max(1, math.ceil(policy.budget_window))
        self._stamps = [-1] * self._size
        self._requests = [0] * self._size
        self._retries = [0] * self._size

    def _slot(self) -> tuple[int, int]:
        now = int(self._clock())
        slot = now % self._size
        if self._stamps[slot] != now:
            self._stamps[slot], self._requests[slot], self._retries[slot] = now, 0, 0
        return slot, now

    def record_request(self) -> None:
        slot, _ = self._slot()
        self._requests[slot] += 1

    def try_spend(self) -> bool:
        """Take one retry from the budget; False when it is spent."""
        slot, now = self._slot()
        live = [i for i in range(self._size) if self._stamps[i] > now - self._size]
        requests = sum(self._requests[i] for i in live)
        retries = sum(self._retries[i] for i in live)
        allowed = max(
            self._policy.budget_min_per_second * self._size, self._policy.budget_ratio * requests
        )
        if retries >= allowed:
            return False
        self._retries[slot] += 1
        return True


TIMEOUT_MESSAGES = {
    "first_byte": "The engine did not start answering within the first-byte timeout.",
    "idle": "The engine went silent mid-response for longer than the idle timeout.",
    "total": "The exchange with the engine exceeded the total timeout.",
}


class Watchdog:
    """One timer per request for the total deadline and the current phase's limit.

    The phase (``first_byte`` until the response headers, then ``idle`` between chunks)
    restarts with `enter`; `touch` marks activity. The timer is re-armed lazily when it
    fires early, so marking activity per chunk costs one clock read, not a new timer. On
    expiry it records which limit ran out and cancels the request's task.

    ``on_slow`` is called once if the request is still running ``slow_after`` seconds in;
    sharing the timer keeps requests that finish sooner at one timer each.
    """

    __slots__ = (
        "_due",
        "_handle",
        "_limit",
        "_loop",
        "_mark",
        "_on_slow",
        "_slow_at",
        "_task",
        "expired",
        "phase",
        "total",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        task: asyncio.Task[Any],
        total: float,
        first_check: float,
        on_slow: Callable[[], None] | None = None,
        slow_after: float = math.inf,
    ) -> None:
        self._loop = loop
        self._task = task
        self.total = total
        self.phase = "total"
        self._limit = math.inf
        self._mark = loop.time()
        self.expired: str | None = None
        # The first check comes after the shortest phase limit, so entering a phase rarely
        # has to move the timer earlier.
        self._on_slow = on_slow
        self._slow_at = self._mark + slow_after
        self._due = min(total, self._mark + first_check, self._slow_at)
        self._handle = loop.call_at(self._due, self._fire)

    def enter(self, phase: str, limit: float) -> None:
        self.phase, self._limit, self._mark = phase, limit, self._loop.time()
        due = min(self.total, self._mark + limit)
        if due < self._due:
            self._handle.cancel()
            self._due = due
            self._handle = self._loop.call_at(due, self._fire)

    def touch(self) -> None:
        self._mark = self._loop.time()

    def _fire(self) -> None:
        now = self._loop.time()
        if self._on_slow is not None and now >= self._slow_at:
            on_slow, self._on_slow = self._on_slow, None
            on_slow()
        phase_due = self._mark + self._limit
        due = min(self.total, phase_due)
        if self._on_slow is not None:
            due = min(due, self._slow_at)
        if now >= due:
            self.expired = "total" if self.total <= phase_due else self.phase
            self._task.cancel()
        else:
            self._due = due
            self._handle = self._loop.call_at(due, self._fire)

    def close(self) -> None:
        self._handle.cancel()
