"""Weighted fair queuing across API keys: priority is a weight, not an order.

Each key has a FIFO lane. Dispatch is stride scheduling (Waldspurger and Weihl 1995), the
discrete form of weighted fair queuing: every lane carries a *pass*; the next item comes from
the waiting lane with the smallest pass (ties to the lane that started waiting first), and
that lane's pass then grows by ``1 / weight``. While several keys are backlogged each gets a
share of dispatches proportional to its weight (priority 10 against 1: ten to one), and no
backlog, however long, can starve another key: every waiting lane's pass is at most one
stride ahead of the virtual time, so it is served within a bounded number of dispatches.

A lane that starts waiting joins at the current virtual time (the pass of the last dispatch),
or at its own pass if that is later: a key that was idle does not bank credit, and one that
just used its share does not get it back by pausing for a moment.

Pure and synchronous: it only orders items; waking waiters is the dispatcher's job.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Generic, TypeVar

__all__ = ["FairQueue"]

T = TypeVar("T")


class _Lane(Generic[T]):
    __slots__ = ("items", "joined", "pass_", "weight")

    def __init__(self, weight: int) -> None:
        self.items: deque[T] = deque()
        self.weight = weight
        self.pass_ = 0.0
        self.joined = 0


class FairQueue(Generic[T]):
    """Items waiting per key; `pop` returns the next one by weighted fair queuing."""

    def __init__(self) -> None:
        self._lanes: dict[str, _Lane[T]] = {}
        self._waiting: dict[str, _Lane[T]] = {}  # lanes with items, the only ones `pop` scans
        self._virtual_time = 0.0
        self._joins = 0
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def waiting(self, key: str) -> int:
        """How many items ``key`` has waiting."""
        lane = self._waiting.get(key)
        return 0 if lane is None else len(lane.items)

    def counts(self) -> Iterator[tuple[str, int]]:
        """(key, items waiting) for every key seen, zeros included (for a gauge)."""
        for key, lane in self._lanes.items():
            yield key, len(lane.items)

    def weights_waiting(self) -> int:
        """The sum of the weights of the keys with items waiting."""
        return sum(lane.weight for lane in self._waiting.values())

    def push(self, key: str, weight: int, item: T) -> None:
        """Queue ``item`` at the end of ``key``'s lane; ``weight`` >= 1 is the key's priority."""
        if weight < 1:
            raise ValueError("a weight must be at least 1")
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane(weight)
        lane.weight = weight  # the latest keys file wins
        if not lane.items:
            lane.pass_ = max(lane.pass_, self._virtual_time)
            self._joins += 1
            lane.joined = self._joins
            self._waiting[key] = lane
        lane.items.append(item)
        self._size += 1

    def peek_key(self) -> str | None:
        """The key whose item `pop` would return next, or None when nothing waits."""
        best_key: str | None = None
        best: _Lane[T] | None = None
        for key, lane in self._waiting.items():
            if best is None or (lane.pass_, lane.joined) < (best.pass_, best.joined):
                best_key, best = key, lane
        return best_key

    def pop(self) -> T:
        """The next item by weighted fair queuing; IndexError when nothing waits."""
        key = self.peek_key()
        if key is None:
            raise IndexError("pop from an empty fair queue")
        lane = self._waiting[key]
        item = lane.items.popleft()
        self._size -= 1
        self._virtual_time = lane.pass_
        lane.pass_ += 1.0 / lane.weight
        if not lane.items:
            del self._waiting[key]
        return item

    def remove(self, key: str, item: T) -> bool:
        """Take ``item`` out of ``key``'s lane (it gave up waiting); False if it is not there."""
        lane = self._waiting.get(key)
        if lane is None:
            return False
        try:
            lane.items.remove(item)
        except ValueError:
            return False
        self._size -= 1
        if not lane.items:
            del self._waiting[key]
        return True
