"""An event rate over the last few seconds, for honest Retry-After estimates.

An exponentially decaying count: each event adds one, and the count decays with time
constant ``window``; the rate is ``count / window``. It follows changes within a window and
costs two multiplications per event. Pure: the caller passes the time.
"""

from __future__ import annotations

import math

__all__ = ["DecayingRate"]


class DecayingRate:
    """Events per second, averaged with an exponential decay of time constant ``window``."""

    __slots__ = ("_count", "_updated", "window")

    def __init__(self, window: float = 10.0, now: float = 0.0) -> None:
        if window <= 0:
            raise ValueError("the window must be positive")
        self.window = window
        self._count = 0.0
        self._updated = now

    def _decay(self, now: float) -> None:
        if now > self._updated:
            self._count *= math.exp(-(now - self._updated) / self.window)
            self._updated = now

    def add(self, now: float, events: float = 1.0) -> None:
        self._decay(now)
        self._count += events

    def per_second(self, now: float) -> float:
        self._decay(now)
        return self._count / self.window
