"""Bounded polling for the e2e tests: every wait has a deadline and says what it waited for."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
POLL_SECONDS = 0.25


def eventually(probe: Callable[[], T | None], timeout: float, what: str) -> T:
    """Call `probe` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(POLL_SECONDS)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def holds_for(probe: Callable[[], bool], duration: float, what: str) -> None:
    """Poll `probe` for `duration` seconds; fail as soon as it is false."""
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        if not probe():
            raise AssertionError(f"{what} stopped holding")
        time.sleep(POLL_SECONDS * 4)
