"""Least-load, round-robin, the strategy switch and the routing key (sticky: test_sticky)."""

from __future__ import annotations

from collections import Counter

import pytest

from llmservice.router import (
    BalancerConfig,
    LeastLoadBalancer,
    RoundRobinBalancer,
    StickyBalancer,
    Strategy,
    make_balancer,
    prefix_key,
    routing_key,
)


def test_empty_fleet_picks_nothing() -> None:
    balancers = (make_balancer(BalancerConfig()), LeastLoadBalancer(), RoundRobinBalancer())
    for balancer in balancers:
        balancer.update([])
        assert balancer.pick("session:x", {}) is None
        assert balancer.pick(None, {}) is None


def test_least_load_spreads_ties_and_prefers_idle() -> None:
    balancer = LeastLoadBalancer()
    balancer.update(["a", "b", "c"])
    picks: Counter[str] = Counter()
    for _ in range(30):
        choice = balancer.pick(None, {})
        assert choice is not None
        picks[choice.replica] += 1
    assert picks == {"a": 10, "b": 10, "c": 10}
    choice = balancer.pick(None, {"a": 1, "b": 0, "c": 1}, exclude={"b"})
    assert choice is not None
    assert choice.replica in ("a", "c")


def test_round_robin_takes_turns() -> None:
    balancer = RoundRobinBalancer()
    balancer.update(["a", "b", "c"])
    seen = []
    for _ in range(6):
        choice = balancer.pick("session:ignored", {"a": 100})
        assert choice is not None
        seen.append(choice.replica)
    assert Counter(seen) == {"a": 2, "b": 2, "c": 2}


@pytest.mark.parametrize(
    ("strategy", "kind"),
    [
        (Strategy.SESSION, StickyBalancer),
        (Strategy.LEAST_LOAD, LeastLoadBalancer),
        (Strategy.ROUND_ROBIN, RoundRobinBalancer),
    ],
)
def test_make_balancer_follows_the_strategy(strategy: Strategy, kind: type) -> None:
    assert isinstance(make_balancer(BalancerConfig(strategy=strategy)), kind)


def test_routing_key_prefers_session_then_user_then_prefix() -> None:
    body = {"user": "u1", "messages": [{"role": "user", "content": "hello"}]}
    assert routing_key("s1", body, 100) == ("session:s1", "session")
    assert routing_key(None, body, 100) == ("session:u1", "user")
    key, kind = routing_key(None, {"messages": body["messages"]}, 100)
    assert kind == "prefix"
    assert key is not None
    assert "hello" in key
    assert routing_key(None, {"input": "x"}, 100) == (None, "none")


def test_prefix_uses_system_prompt_and_first_user_message_only() -> None:
    system = {"role": "system", "content": "You are terse."}
    first = {"role": "user", "content": [{"type": "text", "text": "Question one"}]}
    later = [{"role": "assistant", "content": "A"}, {"role": "user", "content": "Question two"}]
    short = prefix_key({"messages": [system, first]}, 1000)
    long = prefix_key({"messages": [system, first, *later]}, 1000)
    assert short == long  # the conversation growing keeps its key
    assert short is not None
    assert "Question two" not in short
    assert "You are terse." in short


def test_conversations_under_one_system_prompt_get_keys_of_their_own() -> None:
    # The whole first user message counts, not only the first characters of the head, so a
    # long shared system prompt does not put a whole application on one replica.
    system = {"role": "system", "content": "s" * 5000}
    keys = {
        prefix_key({"messages": [system, {"role": "user", "content": f"question {i}"}]}, 64)
        for i in range(10)
    }
    assert len(keys) == 10
    assert prefix_key({"messages": [{"role": "user", "content": ""}]}, 64) is None
    assert prefix_key({"prompt": ["abc", "def"]}, 10) == "prefix:abc"
    assert prefix_key({"prompt": "x" * 5000}, 64) == "prefix:" + "x" * 64
    assert prefix_key({"messages": []}, 10) is None
