"""The dispatcher: caps, the queue in front of them, and every way a waiter leaves it."""

from __future__ import annotations

import asyncio
import math

import pytest

from llmservice.router.admission import Dispatcher
from llmservice.router.balancer import LeastLoadBalancer, make_balancer
from llmservice.router.clients import Client
from llmservice.router.config import BalancerConfig
from llmservice.router.errors import KeyQueueFull, QueueFull, QueueTimeout

from .conftest import run, until


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(
    replicas: tuple[str, ...] = ("a", "b"),
    *,
    cap: int | None = 1,
    max_queued: int = 100,
    queue_timeout: float = 30.0,
    clock: Clock | None = None,
) -> tuple[Dispatcher, dict[str, int], list[tuple[str, float]]]:
    loads: dict[str, int] = {}
    waits: list[tuple[str, float]] = []
    balancer = make_balancer(BalancerConfig())

    def release(name: str) -> None:
        loads[name] -= 1
        dispatcher.freed(name)

    dispatcher = Dispatcher(
        balancer,
        loads,
        release,
        cap=cap,
        max_queued=max_queued,
        queue_timeout=queue_timeout,
        clock=clock or Clock(),
        on_wait=lambda name, seconds: waits.append((name, seconds)),
    )
    balancer.update(replicas)
    dispatcher.update(replicas)
    return dispatcher, loads, waits


def test_slots_are_handed_out_up_to_the_cap_and_then_refused_at_once() -> None:
    dispatcher, loads, _ = make(cap=2)
    choices = [dispatcher.try_acquire(f"session:{i}", ()) for i in range(4)]
    assert all(choice is not None for choice in choices)
    assert loads == {"a": 2, "b": 2}
    assert dispatcher.try_acquire("session:x", ()) is None
    assert dispatcher.blocked == {"a", "b"}


def test_without_a_cap_the_fast_path_is_the_balancer_alone() -> None:
    dispatcher, loads, _ = make(cap=None)
    for i in range(50):
        assert dispatcher.try_acquire(f"session:{i}", ()) is not None
    assert sum(loads.values()) == 50
    assert dispatcher.blocked == set()
    assert list(dispatcher.limits()) == []


def test_a_retry_excludes_the_replicas_it_tried() -> None:
    dispatcher, _, _ = make(cap=5)
    choice = dispatcher.try_acquire("session:1", {"a"})
    assert choice is not None
    assert choice.replica == "b"
    assert dispatcher.try_acquire("session:1", {"a", "b"}) is None


def test_waiters_get_freed_slots_in_weighted_fair_order() -> None:
    async def scenario() -> None:
        dispatcher, loads, waits = make(("a",), cap=1)
        assert dispatcher.try_acquire(None, ()) is not None
        order: list[str] = []
        high, low = Client("high", priority=3), Client("low", priority=1)

        async def wait(client: Client) -> None:
            choice = await dispatcher.wait(None, client)
            order.append(client.name)
            assert choice.replica == "a"

        tasks = [asyncio.create_task(wait(low)) for _ in range(4)]
        tasks += [asyncio.create_task(wait(high)) for _ in range(6)]
        await until(lambda: dispatcher.waiting == 10)
        assert dict(dispatcher.queued()) == {"low": 4, "high": 6}
        for served in range(10):
            loads["a"] -= 1
            dispatcher.freed("a")  # one slot: exactly one waiter goes
            assert loads["a"] == 1
            await until(lambda served=served: len(order) == served + 1)
        await asyncio.gather(*tasks)
        # "low" joined first; then three "high" for each "low" while both wait.
        assert order[:8] == ["low", "high", "high", "high", "low", "high", "high", "high"]
        assert sorted(name for name, _ in waits) == ["high"] * 6 + ["low"] * 4

    run(scenario())


def test_the_queue_bounds_refuse_with_an_honest_retry_after() -> None:
    async def scenario() -> None:
        clock = Clock()
        dispatcher, loads, _ = make(("a",), cap=1, max_queued=3, clock=clock)
        assert dispatcher.try_acquire(None, ()) is not None
        # Ten slots freed over the last ten seconds: about one a second.
        for _ in range(10):
            clock.now += 1.0
            loads["a"] -= 1
            dispatcher.freed("a")
            assert dispatcher.try_acquire(None, ()) is not None
        capped = Client("capped", max_queued=2)
        tasks = [asyncio.create_task(dispatcher.wait(None, capped)) for _ in range(2)]
        await until(lambda: dispatcher.waiting == 2)
        with pytest.raises(KeyQueueFull) as key_full:
            await dispatcher.wait(None, capped)
        other = Client("other", priority=2)
        tasks.append(asyncio.create_task(dispatcher.wait(None, other)))
        await until(lambda: dispatcher.waiting == 3)
        with pytest.raises(QueueFull) as full:
            await dispatcher.wait(None, Client("third"))
        rate = dispatcher.departures.per_second(clock.now)
        assert 0.5 < rate < 1.0
        # The queue moves once per freed slot ...
        assert full.value.retry_after == math.ceil(1 / rate)
        # ... and "capped", alone in it then, got every dispatch ...
        assert key_full.value.retry_after == math.ceil(1 / rate)
        # ... but a third of them once "other" (priority 2) waits too.
        with pytest.raises(KeyQueueFull) as shared:
            await dispatcher.wait(None, capped)
        assert shared.value.retry_after == math.ceil(3 / rate)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert dispatcher.waiting == 0
        assert dict(dispatcher.queued()) == {"capped": 0, "other": 0}

    run(scenario())


def test_a_waiter_times_out_and_leaves_the_queue() -> None:
    async def scenario() -> None:
        dispatcher, loads, _ = make(("a",), cap=1, queue_timeout=0.05)
        assert dispatcher.try_acquire(None, ()) is not None
        with pytest.raises(QueueTimeout) as timeout:
            await dispatcher.wait(None, Client("k"))
        assert timeout.value.retry_after >= 1
        assert dispatcher.waiting == 0
        loads["a"] -= 1
        dispatcher.freed("a")
        assert loads == {"a": 0}  # nobody was dispatched into the freed slot

    run(scenario())


def test_a_waiter_cancelled_after_it_got_a_slot_gives_the_slot_back() -> None:
    async def scenario() -> None:
        dispatcher, loads, _ = make(("a",), cap=1)
        assert dispatcher.try_acquire(None, ()) is not None
        task = asyncio.create_task(dispatcher.wait(None, Client("k")))
        await until(lambda: dispatcher.waiting == 1)
        loads["a"] -= 1
        dispatcher.freed("a")  # the slot goes to the waiter ...
        assert loads == {"a": 1}
        task.cancel()  # ... which is cancelled before it runs again
        with pytest.raises(asyncio.CancelledError):
            await task
        assert loads == {"a": 0}
        assert dispatcher.blocked == set()

    run(scenario())


def test_a_waiter_cancelled_in_the_queue_is_never_dispatched() -> None:
    async def scenario() -> None:
        dispatcher, loads, _ = make(("a",), cap=1)
        assert dispatcher.try_acquire(None, ()) is not None
        gone = asyncio.create_task(dispatcher.wait(None, Client("gone")))
        stays = asyncio.create_task(dispatcher.wait(None, Client("stays")))
        await until(lambda: dispatcher.waiting == 2)
        gone.cancel()
        loads["a"] -= 1
        dispatcher.freed("a")  # before the cancelled task ran its handler
        assert (await stays).replica == "a"
        with pytest.raises(asyncio.CancelledError):
            await gone
        assert loads == {"a": 1}
        assert dispatcher.waiting == 0

    run(scenario())


def test_a_closed_replica_takes_nothing_until_it_opens() -> None:
    async def scenario() -> None:
        loads: dict[str, int] = {}
        balancer = LeastLoadBalancer()
        dispatcher = Dispatcher(
            balancer, loads, lambda name: None, cap=None, max_queued=10, queue_timeout=5
        )
        balancer.update(["a", "b"])
        dispatcher.update(["a", "b"])
        dispatcher.set_allowance("a", 0)
        dispatcher.set_allowance("b", 3)
        for _ in range(3):  # b's allowance until the gate's next sample
            choice = dispatcher.try_acquire(None, ())
            assert choice is not None
            assert choice.replica == "b"
        assert dispatcher.closed == {"a", "b"}
        assert dispatcher.try_acquire(None, ()) is None
        waiters = [asyncio.create_task(dispatcher.wait(None, Client("k"))) for _ in range(3)]
        await until(lambda: dispatcher.waiting == 3)
        dispatcher.set_allowance("a", 1)  # opens for one
        assert (await waiters[0]).replica == "a"
        assert dispatcher.waiting == 2
        dispatcher.set_allowance("b", None)  # no measure: no limit
        assert [(await w).replica for w in waiters[1:]] == ["b", "b"]
        assert dispatcher.closed == {"a"}

    run(scenario())


def test_a_new_replica_takes_waiters_at_once() -> None:
    async def scenario() -> None:
        dispatcher, _, _ = make(("a",), cap=1)
        assert dispatcher.try_acquire(None, ()) is not None
        waiter = asyncio.create_task(dispatcher.wait("session:s", Client("k")))
        await until(lambda: dispatcher.waiting == 1)
        dispatcher.balancer.update(["a", "b"])
        dispatcher.update(["a", "b"])
        assert (await waiter).replica == "b"

    run(scenario())
