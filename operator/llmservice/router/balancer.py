"""Pure replica selection: CHWBL, least-load and round-robin.

No I/O, no clock, no randomness: a balancer is told the set of routable replicas
(`update`) and, per request, the routing key and the current in-flight load of each
replica (`pick`). The proxy owns the load counters; the balancer only reads them.

Consistent hashing with bounded loads (CHWBL, Mirrokni, Thorup and Zadimoghaddam 2016):
every replica owns ``virtual_nodes`` points on a 64-bit hash ring; a key starts at its
own hash and walks clockwise to the first replica whose load is below
``ceil(load_bound * (total_load + 1) / replicas)``. With no load the key lands on its
*primary* (the first replica on the ring), so a session sticks to the replica holding
its KV cache; a hot replica spills keys to the next one on the ring rather than anywhere.
Adding a replica takes only the keys that now hash to its points (about 1/(N+1)); removing
one moves only its keys. Enough virtual nodes keep every share close to 1/N.

The routing key is the session header, else the OpenAI ``user`` field, else a hash of a
bounded prompt prefix (the system prompt and the first user message, first
``prefix_chars`` characters) so that requests sharing a long system prompt meet its
prefix cache. Requests without any key go to the least-loaded replica.
"""

from __future__ import annotations

import bisect
import hashlib
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from llmservice.router.config import BalancerConfig, Strategy

__all__ = [
    "Balancer",
    "Choice",
    "ConsistentHashBalancer",
    "LeastLoadBalancer",
    "RoundRobinBalancer",
    "make_balancer",
    "prefix_key",
    "routing_key",
]


def _hash64(text: str) -> int:
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


class LeastLoadBalancer:
    """The replica with the fewest requests in flight; ties go round the ring in turn."""

    def __init__(self) -> None:
        self._replicas: tuple[str, ...] = ()
        self._turn = 0

    @property
    def replicas(self) -> tuple[str, ...]:
        return self._replicas

    def update(self, replicas: Collection[str]) -> None:
        self._replicas = tuple(sorted(set(replicas)))

    def pick(
        self, key: str | None, loads: Mapping[str, int], exclude: Collection[str] = ()
    ) -> Choice | None:
        replicas = self._replicas
        count = len(replicas)
        if not count:
            return None
        self._turn = (self._turn + 1) % count
        best: str | None = None
        best_load = 0
        for i in range(count):
            replica = replicas[(self._turn + i) % count]
            if replica in exclude:
                continue
            load = loads.get(replica, 0)
            if best is None or load < best_load:
                best, best_load = replica, load
        return None if best is None else Choice(best)


class RoundRobinBalancer:
    """Each routable replica in turn."""

    def __init__(self) -> None:
        self._replicas: tuple[str, ...] = ()
        self._turn = 0

    def update(self, replicas: Collection[str]) -> None:
        self._replicas = tuple(sorted(set(replicas)))

    def pick(
        self, key: str | None, loads: Mapping[str, int], exclude: Collection[str] = ()
    ) -> Choice | None:
        replicas = self._replicas
        for _ in range(len(replicas)):
            self._turn = (self._turn + 1) % len(replicas)
            if replicas[self._turn] not in exclude:
                return Choice(replicas[self._turn])
        return None


class ConsistentHashBalancer:
    """CHWBL on the routing key; keyless requests go to the least-loaded replica."""

    def __init__(self, *, load_bound: float = 1.25, virtual_nodes: int = 1000) -> None:
        if load_bound < 1.0:
            raise ValueError("load bound must be >= 1.0")
        self.load_bound = load_bound
        self.virtual_nodes = virtual_nodes
        self._replicas: tuple[str, ...] = ()
        self._points: list[int] = []
        self._owners: list[str] = []
        self._fallback = LeastLoadBalancer()
        self._point_cache: dict[str, list[int]] = {}

    @property
    def replicas(self) -> tuple[str, ...]:
        return self._replicas

    def _replica_points(self, replica: str) -> list[int]:
        points = self._point_cache.get(replica)
        if points is None:
            points = [_hash64(f"{replica}#{i}") for i in range(self.virtual_nodes)]
            self._point_cache[replica] = points
        return points

    def update(self, replicas: Collection[str]) -> None:
        wanted = tuple(sorted(set(replicas)))
        if wanted == self._replicas:
            return
        # The cache holds only current replicas, so it is bounded by the fleet size.
        self._point_cache = {r: p for r, p in self._point_cache.items() if r in wanted}
        ring = sorted(
            (point, replica) for replica in wanted for point in self._replica_points(replica)
        )
        self._points = [point for point, _ in ring]
        self._owners = [replica for _, replica in ring]
        self._replicas = wanted
        self._fallback.update(wanted)

    def capacity(self, loads: Mapping[str, int], eligible: Sequence[str]) -> int:
        """The most in-flight requests a replica may hold after taking one more."""
        total = sum([loads.get(replica, 0) for replica in eligible])
        return math.ceil(self.load_bound * (total + 1) / len(eligible))

    def pick(
        self, key: str | None, loads: Mapping[str, int], exclude: Collection[str] = ()
    ) -> Choice | None:
        if key is None:
            return self._fallback.pick(None, loads, exclude)
        eligible = [r for r in self._replicas if r not in exclude] if exclude else self._replicas
        if not eligible:
            return None
        capacity = self.capacity(loads, eligible)
        points, owners = self._points, self._owners
        size = len(points)
        start = bisect.bisect_right(points, _hash64(key))
        primary: str | None = None
        seen: set[str] = set()
        for step in range(size):
            owner = owners[(start + step) % size]
            if owner in seen or owner in exclude:
                continue
            if primary is None:
                primary = owner
            if loads.get(owner, 0) < capacity:
                return Choice(owner, primary=owner == primary)
            seen.add(owner)
            if len(seen) == len(eligible):
                break
        return None  # unreachable while load_bound >= 1: the least-loaded one is below capacity


def make_balancer(config: BalancerConfig) -> Balancer:
    """The balancer for ``config.strategy``."""
    if config.strategy is Strategy.SESSION:
        return ConsistentHashBalancer(
            load_bound=config.load_bound, virtual_nodes=config.virtual_nodes
        )
    if config.strategy is Strategy.LEAST_LOAD:
        return LeastLoadBalancer()
    return RoundRobinBalancer()


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts: keep the text ones
        return "".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def prefix_key(body: Mapping[str, Any], chars: int) -> str | None:
    """A key from the first ``chars`` characters of the prompt's stable head, or None.

    Chat: the system messages and the first user message. Completions: the prompt (the
    first one when it is a list). Anything else has no prefix.
    """
    messages = body.get("messages")
    if isinstance(messages, list):
        parts: list[str] = []
        size = 0
        for message in messages:
            if not isinstance(message, dict):
                continue
            role = message.get("role")
            if role in ("system", "developer", "user"):
                text = _text(message.get("content"))
                parts.append(text)
                size += len(text)
            if role == "user" or size >= chars:
                break
        head = "\x1f".join(parts)[:chars]
        return "prefix:" + head if head else None
    prompt = body.get("prompt")
    if isinstance(prompt, list) and prompt:
        prompt = prompt[0]
    if isinstance(prompt, str) and prompt:
        return "prefix:" + prompt[:chars]
    return None


def routing_key(
    session: str | None, body: Mapping[str, Any], prefix_chars: int
) -> tuple[str | None, str]:
    """The key to hash and its kind: ``session``, ``user``, ``prefix`` or ``none``."""
    if session:
        return "session:" + session, "session"
    user = body.get("user")
    if isinstance(user, str) and user:
        return "session:" + user, "user"
    key = prefix_key(body, prefix_chars)
    return (key, "prefix") if key is not None else (None, "none")
