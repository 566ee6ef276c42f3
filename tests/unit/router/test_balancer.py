"""The balancer is pure: properties of CHWBL, least-load and round-robin."""

from __future__ import annotations

import math
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmservice.router import (
    BalancerConfig,
    ConsistentHashBalancer,
    LeastLoadBalancer,
    RoundRobinBalancer,
    Strategy,
    make_balancer,
    prefix_key,
    routing_key,
)

SESSIONS = [f"session:{i}" for i in range(4000)]
names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=20)
fleets = st.lists(names, min_size=1, max_size=12, unique=True)


def placement(balancer: ConsistentHashBalancer) -> dict[str, str]:
    out = {}
    for key in SESSIONS:
        choice = balancer.pick(key, {})
        assert choice is not None
        out[key] = choice.replica
    return out


@settings(max_examples=40, deadline=None, derandomize=True)
@given(fleet=fleets, newcomer=names)
def test_adding_a_replica_moves_at_most_its_share(fleet: list[str], newcomer: str) -> None:
    if newcomer in fleet:
        return
    balancer = ConsistentHashBalancer()
    balancer.update(fleet)
    before = placement(balancer)
    balancer.update([*fleet, newcomer])
    after = placement(balancer)
    moved = [key for key in SESSIONS if before[key] != after[key]]
    assert all(after[key] == newcomer for key in moved)  # only to the newcomer
    assert len(moved) / len(SESSIONS) <= 1 / (len(fleet) + 1) + 0.05


@settings(max_examples=40, deadline=None, derandomize=True)
@given(fleet=fleets.filter(lambda f: len(f) >= 2), data=st.data())
def test_removing_a_replica_moves_only_its_sessions(fleet: list[str], data: st.DataObject) -> None:
    leaving = data.draw(st.sampled_from(fleet))
    balancer = ConsistentHashBalancer()
    balancer.update(fleet)
    before = placement(balancer)
    balancer.update([r for r in fleet if r != leaving])
    after = placement(balancer)
    for key in SESSIONS:
        if before[key] != leaving:
            assert after[key] == before[key]
        else:
            assert after[key] != leaving


@settings(max_examples=60, deadline=None)
@given(
    fleet=fleets,
    bound=st.floats(min_value=1.0, max_value=3.0),
    events=st.lists(st.tuples(st.integers(0, 50), st.booleans()), min_size=1, max_size=400),
)
def test_no_replica_exceeds_the_load_bound(
    fleet: list[str], bound: float, events: list[tuple[int, bool]]
) -> None:
    balancer = ConsistentHashBalancer(load_bound=bound, virtual_nodes=50)
    balancer.update(fleet)
    loads = dict.fromkeys(fleet, 0)
    placed: list[str] = []
    for session, finish in events:
        if finish and placed:
            loads[placed.pop(0)] -= 1
            continue
        choice = balancer.pick(f"session:{session}", loads)
        assert choice is not None
        loads[choice.replica] += 1
        placed.append(choice.replica)
        limit = math.ceil(bound * sum(loads.values()) / len(fleet))
        assert loads[choice.replica] <= limit


def test_uniform_offered_load_stays_within_the_bound() -> None:
    fleet = [f"engine-{i}" for i in range(5)]
    balancer = ConsistentHashBalancer(load_bound=1.25)
    balancer.update(fleet)
    loads = dict.fromkeys(fleet, 0)
    for i in range(1000):  # every session in flight at once, all hashed
        choice = balancer.pick(f"session:{i}", loads)
        assert choice is not None
        loads[choice.replica] += 1
    assert max(loads.values()) <= math.ceil(1.25 * 1000 / 5)


def test_hot_session_spills_to_the_next_replica_and_reports_it() -> None:
    balancer = ConsistentHashBalancer(load_bound=1.0)
    balancer.update(["a", "b", "c"])
    primary = balancer.pick("session:hot", {})
    assert primary is not None
    assert primary.primary
    loads = {"a": 0, "b": 0, "c": 0, primary.replica: 5}
    spilled = balancer.pick("session:hot", loads)
    assert spilled is not None
    assert spilled.replica != primary.replica
    assert not spilled.primary


def test_exclusion_skips_tried_replicas() -> None:
    balancer = ConsistentHashBalancer()
    balancer.update(["a", "b"])
    first = balancer.pick("session:x", {})
    assert first is not None
    second = balancer.pick("session:x", {}, exclude={first.replica})
    assert second is not None
    assert second.replica != first.replica
    assert balancer.pick("session:x", {}, exclude={"a", "b"}) is None


def test_empty_fleet_picks_nothing() -> None:
    for balancer in (ConsistentHashBalancer(), LeastLoadBalancer(), RoundRobinBalancer()):
        balancer.update([])
        assert balancer.pick("session:x", {}) is None
        assert balancer.pick(None, {}) is None


def test_keyless_requests_go_to_the_least_loaded() -> None:
    balancer = ConsistentHashBalancer()
    balancer.update(["a", "b", "c"])
    choice = balancer.pick(None, {"a": 3, "b": 1, "c": 2})
    assert choice is not None
    assert choice.replica == "b"


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
        (Strategy.SESSION, ConsistentHashBalancer),
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
    bounded = prefix_key({"messages": [{"role": "user", "content": "x" * 5000}]}, 64)
    assert bounded is not None
    assert len(bounded) <= 64 + len("prefix:")
    assert prefix_key({"prompt": ["abc", "def"]}, 10) == "prefix:abc"
    assert prefix_key({"messages": []}, 10) is None
