"""Per-request deadlines: the total timeout and the limit of the current phase.

`Watchdog` keeps one timer per request for the total deadline and the limit of the current
phase (first byte, then idle gaps); it runs on the request's event loop, so tests drive it
with the loop's clock. `TIMEOUT_MESSAGES` says which limit ran out, for the error body.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any

__all__ = ["TIMEOUT_MESSAGES", "Watchdog"]


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
