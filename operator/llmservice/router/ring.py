"""What every balancer shares: the `Choice`, the `Balancer` protocol and the hash ring.

Pure: no I/O, no clock, no randomness. A balancer is told the set of routable replicas
(`update`) and, per request, the routing key and the current in-flight load of each
replica (`pick`). The proxy owns the load counters; a balancer only reads them.

The ring: every replica owns ``virtual_nodes`` points on a 64-bit hash ring, and a key
walks clockwise from its own hash. Adding a replica gives it only the keys that now hash to
its points (about 1/(N+1)); removing one moves only its keys; enough virtual nodes keep
every share close to 1/N.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Balancer", "Choice", "HashRing", "hash64"]


def hash64(text: str) -> int:
    """A stable 64-bit hash (the same in every router process, unlike `hash`)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


@dataclass(frozen=True, slots=True)
class Choice:
    """The replica picked, and whether it is the key's first choice (not spilled over)."""

    replica: str
    primary: bool = True


class Balancer(Protocol):
    """What the proxy needs from a balancer."""

    def update(self, replicas: Collection[str]) -> None:
        """Replace the set of routable replicas."""

    def pick(
        self, key: str | None, loads: Mapping[str, int], exclude: Collection[str] = ()
    ) -> Choice | None:
        """A replica for ``key`` given in-flight ``loads``; None when nothing is routable."""


class HashRing:
    """Replicas' points on a 64-bit ring; a key's replicas in clockwise order."""

    def __init__(self, virtual_nodes: int = 1000) -> None:
        if virtual_nodes < 1:
            raise ValueError("virtual nodes must be >= 1")
        self.virtual_nodes = virtual_nodes
        self.replicas: tuple[str, ...] = ()
        self._points: list[int] = []
        self._owners: list[str] = []
        self._point_cache: dict[str, list[int]] = {}

    def _replica_points(self, replica: str) -> list[int]:
        points = self._point_cache.get(replica)
        if points is None:
            points = [hash64(f"{replica}#{i}") for i in range(self.virtual_nodes)]
            self._point_cache[replica] = points
        return points

    def update(self, replicas: Collection[str]) -> None:
        wanted = tuple(sorted(set(replicas)))
        if wanted == self.replicas:
            return
        # The cache holds only current replicas, so it is bounded by the fleet size.
        self._point_cache = {r: p for r, p in self._point_cache.items() if r in wanted}
        ring = sorted(
            (point, replica) for replica in wanted for point in self._replica_points(replica)
        )
        self._points = [point for point, _ in ring]
        self._owners = [replica for _, replica in ring]
        self.replicas = wanted

    def walk(self, hashed: int, exclude: Collection[str] = ()) -> Iterator[str]:
        """Each replica not in ``exclude`` once, clockwise from ``hashed``."""
        points, owners = self._points, self._owners
        size = len(points)
        wanted = len(self.replicas) - sum(1 for r in self.replicas if r in exclude)
        start = bisect.bisect_right(points, hashed)
        seen: set[str] = set()
        for step in range(size):
            if len(seen) == wanted:
                return
            owner = owners[(start + step) % size]
            if owner in seen or owner in exclude:
                continue
            seen.add(owner)
            yield owner

    def first(self, hashed: int) -> str | None:
        """The replica owning the first point clockwise from ``hashed``."""
        if not self._points:
            return None
        return self._owners[bisect.bisect_right(self._points, hashed) % len(self._points)]
