"""Replica selection: sticky sessions, least-load and round-robin, and the routing key.

The session strategy is `llmservice.router.sticky.StickyBalancer`; keyless requests, and
every request under the LeastLoad strategy, go to the replica with the fewest requests in
flight; RoundRobin takes each in turn.

The routing key is the session header, else the OpenAI ``user`` field, else the
conversation's head: a chat's system messages and its first user message, whole, which
every later turn of the same conversation repeats, so turns meet their own prefix cache
without a header while conversations under one system prompt still spread out; a text
completion's first ``prefix_chars`` characters. Requests without any key go to the
least-loaded replica.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from llmservice.router.config import BalancerConfig, Strategy
from llmservice.router.ring import Balancer, Choice
from llmservice.router.sticky import StickyBalancer

__all__ = [
    "Balancer",
    "Choice",
    "LeastLoadBalancer",
    "RoundRobinBalancer",
    "StickyBalancer",
    "make_balancer",
    "prefix_key",
    "routing_key",
]


class LeastLoadBalancer:
    """The replica with the fewest requests in flight; ties go round the ring in turn."""

    def __init__(self) -> None:
        self._replicas: tuple[str, ...] = ()
        # Each turn's order of the replicas, and one immutable Choice per replica: made
        # when the fleet changes, not on every pick.
        self._orders: tuple[tuple[str, ...], ...] = ()
        self._choices: dict[str, Choice] = {}
        self._turn = 0

    @property
    def replicas(self) -> tuple[str, ...]:
        return self._replicas

    def update(self, replicas: Collection[str]) -> None:
        ordered = self._replicas = tuple(sorted(set(replicas)))
        self._orders = tuple(ordered[i:] + ordered[:i] for i in range(len(ordered)))
        self._choices = {replica: Choice(replica) for replica in ordered}

    def pick(
        self, key: str | None, loads: Mapping[str, int], exclude: Collection[str] = ()
    ) -> Choice | None:
        orders = self._orders
        if not orders:
            return None
        turn = self._turn = (self._turn + 1) % len(orders)
        best: str | None = None
        best_load = 0
        for replica in orders[turn]:
            if replica in exclude:
                continue
            load = loads.get(replica, 0)
            if best is None or load < best_load:
                best, best_load = replica, load
        return None if best is None else self._choices[best]


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


def make_balancer(config: BalancerConfig) -> Balancer:
    """The balancer for ``config.strategy``."""
    if config.strategy is Strategy.SESSION:
        return StickyBalancer(
            fallback=LeastLoadBalancer(),
            load_bound=config.load_bound,
            placement_bound=config.placement_bound,
            placement_slack=config.placement_slack,
            virtual_nodes=config.virtual_nodes,
            max_sessions=config.max_sessions,
            idle_seconds=config.session_idle_seconds,
            active_seconds=config.session_active_seconds,
            stable_keys=config.stable_keys,
        )
    if config.strategy is Strategy.LEAST_LOAD:
        return LeastLoadBalancer()
    return RoundRobinBalancer()


# Each message counts with at most this many characters: the router decodes at least the
# first TEXT_HEAD_BYTES / 4 - 16 = 16,368 of every message (`payloads`), so a key made from
# the decoded head equals the key of the whole text. A conversation is told apart from
# others well within that.
MESSAGE_KEY_CHARS = 16_000


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
    """A key from the prompt's stable head, or None.

    Chat: the system messages and the first user message, whole (the part every turn of a
    conversation repeats). Completions: the first ``chars`` characters of the prompt (the
    first one when it is a list). Anything else has no prefix.
    """
    messages = body.get("messages")
    if isinstance(messages, list):
        parts: list[str] = []
        for message in messages:
            if not isinstance(message, dict):
                continue
            role = message.get("role")
            if role in ("system", "developer", "user"):
                parts.append(_text(message.get("content"))[:MESSAGE_KEY_CHARS])
            if role == "user":
                break
        head = "\x1f".join(parts) if any(parts) else ""
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
