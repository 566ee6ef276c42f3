"""The periodic reconcile: every object each interval, never two at once for one object."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import pytest

from llmservice.controller.periodic import PeriodicReconciler


def llms(name: str) -> dict[str, Any]:
    return {"metadata": {"namespace": "ns", "name": name}}


def test_each_object_is_reconciled_and_a_slow_one_is_not_started_twice() -> None:
    calls: list[str] = []
    release = asyncio.Event()

    async def reconcile(body: Mapping[str, Any]) -> None:
        calls.append(body["metadata"]["name"])
        if body["metadata"]["name"] == "slow":
            await release.wait()

    async def scenario() -> None:
        periodic = PeriodicReconciler(lambda: [llms("slow"), llms("fast")], reconcile, 10)
        slow, fast = periodic.tick()
        await fast
        assert periodic.running == {("ns", "slow")}
        (again,) = periodic.tick()  # "slow" is still running: only "fast" starts
        await again
        release.set()
        await slow
        assert periodic.running == frozenset()
        assert len(periodic.tick()) == 2

    asyncio.run(scenario())
    assert sorted(calls) == ["fast", "fast", "fast", "slow", "slow"]


def test_a_failure_is_logged_with_the_object_and_the_others_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    done: list[str] = []
    twice = asyncio.Event()

    async def reconcile(body: Mapping[str, Any]) -> None:
        if body["metadata"]["name"] == "broken":
            raise RuntimeError("boom")
        done.append(body["metadata"]["name"])
        if len(done) == 2:
            twice.set()

    async def scenario() -> None:
        periodic = PeriodicReconciler(lambda: [llms("broken"), llms("fine")], reconcile, 0.01)
        runner = asyncio.create_task(periodic.run())
        await asyncio.wait_for(twice.wait(), 10)
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner

    with caplog.at_level(logging.WARNING):
        asyncio.run(scenario())
    failures = [r for r in caplog.records if "boom" in r.getMessage()]
    assert failures
    assert failures[0].k8s_ref == {"namespace": "ns", "name": "broken"}
