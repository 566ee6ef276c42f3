"""Per-request deadlines: the total timeout and the limit of the current phase.

A `Watchdog` per request holds the total deadline and the limit of the current phase (first
byte, then idle gaps); `Deadlines` checks every watchdog in flight on one timer, every
``tick`` seconds, and cancels the task of a request whose limit ran out. Almost no request
runs out, and a timer of its own armed and cancelled by every request cost more than the
check (a timer's allocation, start, stop and close in the event loop): this way a request
pays for joining and leaving a set. Activity is not stamped with the time either: a phase
can follow a *progress* count (the reads of the engine's response), and the check that
sees it move restarts the phase from its own time, so a streamed part costs the watchdog
nothing. The price is precision: a limit is noticed up to one tick after it ran out, an
idle limit up to two (its last activity is known to the tick); `tick_for` makes the tick a
small part of the shortest limit.
Everything runs on the requests' event loop and its clock, so tests drive it with that.
`TIMEOUT_MESSAGES` says which limit ran out, for the error body.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any

__all__ = ["TIMEOUT_MESSAGES", "Deadlines", "Watchdog", "tick_for"]


TIMEOUT_MESSAGES = {
    "first_byte": "The engine did not start answering within the first-byte timeout.",
    "idle": "The engine went silent mid-response for longer than the idle timeout.",
    "total": "The exchange with the engine exceeded the total timeout.",
}

# A limit is noticed at most 1/PRECISION of the shortest limit late, and at most MAX_TICK.
PRECISION = 32
MIN_TICK = 0.001
MAX_TICK = 1.0


def tick_for(*limits: float) -> float:
    """The tick for requests whose shortest limit is the least of ``limits``."""
    return min(MAX_TICK, max(MIN_TICK, min(limits) / PRECISION))


class Deadlines:
    """The watchdogs in flight on ``loop``, checked every ``tick`` seconds by one timer."""

    def __init__(self, loop: asyncio.AbstractEventLoop, tick: float) -> None:
        self.loop = loop
        self.tick = tick
        self._watched: set[Watchdog] = set()
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._watched)

    def watch(self, watchdog: Watchdog) -> None:
        self._watched.add(watchdog)
        if self._timer is None:
            self._timer = self.loop.call_later(self.tick, self._check)

    def forget(self, watchdog: Watchdog) -> None:
        self._watched.discard(watchdog)

    def _check(self) -> None:
        now = self.loop.time()
        for watchdog in list(self._watched):  # a watchdog that expires leaves the set
            watchdog.check(now)
        # The timer runs only while there are requests to watch.
        self._timer = self.loop.call_later(self.tick, self._check) if self._watched else None


class Watchdog:
    """One request's total deadline and current phase's limit, watched by `Deadlines`.

    The phase (``first_byte`` until the response headers, then ``idle`` between chunks)
    restarts with `enter`, and again at each check that finds its ``progress`` count moved
    (see the module docstring). When a limit has run out, the watchdog records which one
    (``expired``) and cancels the request's task.

    ``on_slow`` is called once if the request is still running ``slow_after`` seconds in,
    on a timer of its own (only an app served by another server asks for it).
    """

    __slots__ = (
        "_deadlines",
        "_limit",
        "_loop",
        "_mark",
        "_progress",
        "_seen",
        "_slow",
        "_task",
        "expired",
        "phase",
        "total",
    )

    def __init__(
        self,
        deadlines: Deadlines,
        task: asyncio.Task[Any],
        total: float,
        on_slow: Callable[[], None] | None = None,
        slow_after: float = math.inf,
    ) -> None:
        self._deadlines = deadlines
        self._loop = loop = deadlines.loop
        self._task = task
        self.total = total
        self.phase = "total"
        self._limit = math.inf
        self._mark = loop.time()
        self._progress: Callable[[], int] | None = None
        self._seen = 0
        self.expired: str | None = None
        self._slow = None if on_slow is None else loop.call_later(slow_after, on_slow)
        deadlines.watch(self)

    def enter(self, phase: str, limit: float, progress: Callable[[], int] | None = None) -> None:
        """Start ``phase``, to last at most ``limit`` seconds without ``progress`` (a count
        that grows with activity) moving; without one, ``limit`` seconds in all."""
        self.phase, self._limit, self._mark = phase, limit, self._loop.time()
        self._progress = progress
        self._seen = 0 if progress is None else progress()

    def check(self, now: float) -> None:
        """Expire if a limit has run out by ``now``."""
        progress = self._progress
        if progress is not None:
            seen = progress()
            if seen != self._seen:  # active since the last check: the phase restarts now
                self._seen, self._mark = seen, now
        phase_due = self._mark + self._limit
        if now >= min(self.total, phase_due) and self.expired is None:
            self.expired = "total" if self.total <= phase_due else self.phase
            self._deadlines.forget(self)
            self._task.cancel()

    def close(self) -> None:
        self._deadlines.forget(self)
        if self._slow is not None:
            self._slow.cancel()
