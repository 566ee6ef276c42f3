"""Request watchdogs on one checking timer: never early, late by at most a tick."""

from __future__ import annotations

import asyncio

import pytest

from llmservice.router.deadlines import MAX_TICK, MIN_TICK, Deadlines, Watchdog, tick_for

from .conftest import run

TICK = 0.02


def test_the_tick_is_a_small_part_of_the_shortest_limit_within_its_bounds() -> None:
    assert tick_for(120.0, 60.0, 1800.0) == MAX_TICK  # the defaults: a second
    assert tick_for(0.5, 60.0, 1800.0) == pytest.approx(0.5 / 32)
    assert tick_for(0.01, 1.0, 1.0) == MIN_TICK


async def sleeper() -> None:
    await asyncio.sleep(3600)


def test_a_phase_limit_cancels_the_task_within_a_tick_of_running_out() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        deadlines = Deadlines(loop, TICK)
        task = asyncio.create_task(sleeper())
        started = loop.time()
        watchdog = Watchdog(deadlines, task, total=loop.time() + 60)
        watchdog.enter("first_byte", 0.2)
        with pytest.raises(asyncio.CancelledError):
            await task
        took = loop.time() - started
        assert watchdog.expired == "first_byte"
        assert 0.2 <= took < 0.2 + 10 * TICK  # never early; a tick late, and some slack
        assert len(deadlines) == 0

    run(scenario())


def test_activity_keeps_an_idle_phase_alive_and_the_total_deadline_still_ends_it() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        deadlines = Deadlines(loop, TICK)
        task = asyncio.create_task(sleeper())
        watchdog = Watchdog(deadlines, task, total=loop.time() + 0.6)
        reads = 0
        watchdog.enter("idle", 0.15, lambda: reads)
        for _ in range(5):  # 0.5 s of activity, each gap well within the idle limit
            await asyncio.sleep(0.1)
            assert not task.done()
            reads += 1
        with pytest.raises(asyncio.CancelledError):
            await task
        assert watchdog.expired in ("total", "idle")
        # Active at 0.5 s: idle would run out at 0.65 s at the earliest, the total at 0.6 s.
        assert watchdog.expired == "total"

    run(scenario())


def test_an_idle_phase_ends_once_its_progress_stops_never_early_and_two_ticks_late_at_most() -> (
    None
):
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        deadlines = Deadlines(loop, TICK)
        task = asyncio.create_task(sleeper())
        watchdog = Watchdog(deadlines, task, total=loop.time() + 60)
        reads = 0
        watchdog.enter("idle", 0.2, lambda: reads)
        for _ in range(4):  # longer in all than the idle limit, never idle for as long
            await asyncio.sleep(0.1)
            reads += 1
        last_read = loop.time()
        with pytest.raises(asyncio.CancelledError):
            await task
        idle = loop.time() - last_read
        assert watchdog.expired == "idle"
        assert 0.2 <= idle < 0.2 + 2 * TICK + 10 * TICK  # two ticks late, and some slack

    run(scenario())


def test_a_closed_watchdog_never_fires_and_the_timer_stops_when_none_is_left() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        deadlines = Deadlines(loop, TICK)
        task = asyncio.create_task(sleeper())
        watchdog = Watchdog(deadlines, task, total=loop.time() + 0.05)
        watchdog.close()
        assert len(deadlines) == 0
        await asyncio.sleep(5 * TICK)
        assert not task.done()
        assert watchdog.expired is None
        assert deadlines._timer is None  # nothing to watch: no timer left running
        task.cancel()

    run(scenario())


def test_on_slow_is_called_once_when_the_request_runs_long() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        deadlines = Deadlines(loop, TICK)
        task = asyncio.create_task(sleeper())
        calls: list[float] = []
        started = loop.time()
        watchdog = Watchdog(
            deadlines, task, total=loop.time() + 60, on_slow=lambda: calls.append(loop.time()),
            slow_after=0.05,
        )  # fmt: skip
        await asyncio.sleep(0.3)
        assert len(calls) == 1
        assert calls[0] - started >= 0.05 - 0.002  # the loop's clock counts milliseconds
        watchdog.close()
        task.cancel()

    run(scenario())
