"""Requested reconciles: coalesced, and retried with backoff after a transient API error."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import httpx
from kubernetes import client

from llmservice.controller.handlers import OperatorState
from llmservice.controller.throughput import ThroughputTracker

BODY = {"kind": "LLMService", "metadata": {"namespace": "ns", "name": "chat"}}


class FlakyState(OperatorState):
    """The API server answers 503 to the first reconcile only."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        super().__init__(api=None, throughput=ThroughputTracker(http))  # type: ignore[arg-type]
        self.calls = 0
        self.succeeded = asyncio.Event()

    async def reconcile(self, body: Mapping[str, Any]) -> None:
        self.calls += 1
        if self.calls == 1:
            raise client.ApiException(status=503, reason="Service Unavailable")
        self.succeeded.set()


def test_requests_coalesce_and_a_transient_failure_is_retried() -> None:
    async def scenario() -> FlakyState:
        async with httpx.AsyncClient() as http:
            state = FlakyState(http)
            state.store.upsert(BODY)
            state.request("ns", "chat")
            state.request("ns", "chat")  # coalesced with the first
            state.request("ns", "absent")  # no such LLMService: nothing to do
            await asyncio.wait_for(state.succeeded.wait(), 10)
            return state

    state = asyncio.run(scenario())
    assert state.calls == 2
    assert state.retries == {}
