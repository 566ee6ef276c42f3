"""Weighted fair queuing across keys: shares, order within a key, no starvation."""

from __future__ import annotations

from collections import Counter

import pytest

from llmservice.router.admission import FairQueue


def backlogged(weights: dict[str, int], per_key: int) -> FairQueue[tuple[str, int]]:
    queue: FairQueue[tuple[str, int]] = FairQueue()
    for i in range(per_key):
        for key, weight in weights.items():
            queue.push(key, weight, (key, i))
    return queue


@pytest.mark.parametrize("weights", [{"high": 10, "low": 1}, {"a": 3, "b": 1}, {"a": 2, "b": 2}])
def test_backlogged_keys_share_dispatch_in_the_ratio_of_their_priorities(
    weights: dict[str, int],
) -> None:
    queue = backlogged(weights, per_key=2000)
    dispatched = Counter(queue.pop()[0] for _ in range(1100))
    total = sum(weights.values())
    for key, weight in weights.items():
        expected = 1100 * weight / total
        assert abs(dispatched[key] - expected) <= 0.1 * expected, dispatched


def test_each_key_is_served_in_arrival_order() -> None:
    queue = backlogged({"high": 10, "low": 1}, per_key=50)
    seen: dict[str, list[int]] = {"high": [], "low": []}
    while len(queue):
        key, i = queue.pop()
        seen[key].append(i)
    assert seen == {"high": list(range(50)), "low": list(range(50))}


def test_a_long_backlog_of_one_key_never_starves_another() -> None:
    queue: FairQueue[str] = FairQueue()
    for i in range(10_000):
        queue.push("flood", 10, f"flood-{i}")
    for _ in range(500):
        queue.pop()
    queue.push("trickle", 1, "trickle-0")
    # Weight 1 against 10: served within one round of eleven dispatches.
    order = [queue.pop() for _ in range(11)]
    assert "trickle-0" in order


def test_a_high_priority_arrival_is_not_stuck_behind_a_low_priority_backlog() -> None:
    queue: FairQueue[str] = FairQueue()
    for i in range(1000):
        queue.push("batch", 1, f"batch-{i}")
    queue.push("chat", 10, "chat-0")
    assert "chat-0" in [queue.pop() for _ in range(2)]


def test_an_idle_key_banks_no_credit() -> None:
    queue: FairQueue[str] = FairQueue()
    for i in range(100):
        queue.push("busy", 1, f"busy-{i}")
    for _ in range(90):
        queue.pop()
    # "late" was idle all along; it joins at the current virtual time and alternates with
    # "busy" (equal weights) instead of taking ninety dispatches in a row.
    for i in range(10):
        queue.push("late", 1, f"late-{i}")
    first = [queue.pop() for _ in range(6)]
    assert sum(item.startswith("late") for item in first) == 3


def test_removed_items_are_never_dispatched_and_counts_follow() -> None:
    queue: FairQueue[str] = FairQueue()
    for item in ("a1", "a2", "a3"):
        queue.push("a", 1, item)
    queue.push("b", 1, "b1")
    assert queue.remove("a", "a2")
    assert not queue.remove("a", "a2")
    assert not queue.remove("c", "a1")
    assert len(queue) == 3
    assert queue.waiting("a") == 2
    assert queue.weights_waiting() == 2
    assert sorted(queue.pop() for _ in range(3)) == ["a1", "a3", "b1"]
    assert dict(queue.counts()) == {"a": 0, "b": 0}
    with pytest.raises(IndexError):
        queue.pop()


def test_weights_below_one_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        FairQueue[str]().push("a", 0, "x")
