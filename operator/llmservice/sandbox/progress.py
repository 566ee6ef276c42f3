"""Progress lines for the slow steps (the cold build, the start), with elapsed time.

A newcomer must see that something is happening: every step prints when it starts and
when it ends, and long steps print a heartbeat with the elapsed time.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO


class Progress:
    """Prints `[  12.3s] step: message` lines relative to one start time."""

    def __init__(
        self,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
        quiet: bool = False,
    ) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._clock = clock
        self._start = clock()
        self._quiet = quiet

    def elapsed(self) -> float:
        return self._clock() - self._start

    def say(self, message: str) -> None:
        if self._quiet:
            return
        print(f"[{self.elapsed():7.1f}s] {message}", file=self._stream, flush=True)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Announce a step, and its duration when it ends."""
        started = self._clock()
        self.say(f"{name} ...")
        yield
        self.say(f"{name}: done in {self._clock() - started:.1f}s")
