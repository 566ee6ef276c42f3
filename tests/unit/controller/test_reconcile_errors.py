"""A transient API error is reported as Reconciling=True and handed back for a retry.

The real API server path is covered by tests/e2e; here the server's failure is scripted,
which the sandbox cannot do on demand.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from kubernetes import client

from llmservice.controller.kinds import Kind
from llmservice.controller.reconcile import Context, reconcile
from llmservice.controller.store import ClusterStore
from llmservice.controller.throughput import ThroughputTracker

BODY = {
    "apiVersion": "serving.llmservice.dev/v1alpha1",
    "kind": "LLMService",
    "metadata": {"name": "chat", "namespace": "default", "uid": "u1", "generation": 3},
    "spec": {"model": {"name": "Qwen/Qwen2.5-0.5B-Instruct"}},
}


class UnavailableAPI:
    """Every apply fails with 503; status patches are recorded."""

    def __init__(self) -> None:
        self.statuses: list[dict[str, Any]] = []

    async def apply(self, kind: Kind, obj: Any) -> dict[str, Any]:
        raise client.ApiException(status=503, reason="Service Unavailable")

    async def patch_status(self, namespace: str, name: str, status: Any) -> None:
        self.statuses.append(dict(status))


def test_transient_error_sets_reconciling_and_propagates() -> None:
    api = UnavailableAPI()

    async def scenario() -> None:
        async with httpx.AsyncClient() as http:
            context = Context(
                api=api,  # type: ignore[arg-type]
                store=ClusterStore(),
                throughput=ThroughputTracker(http),
                monitoring_crd_installed=False,
            )
            with pytest.raises(client.ApiException):
                await reconcile(BODY, context)

    asyncio.run(scenario())
    (status,) = api.statuses
    (reconciling,) = status["conditions"]
    assert reconciling["type"] == "Reconciling"
    assert reconciling["status"] == "True"
    assert reconciling["reason"] == "APIError"
    assert reconciling["observedGeneration"] == 3
    assert "503" in reconciling["message"]
