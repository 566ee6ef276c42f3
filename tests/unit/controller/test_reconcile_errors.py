"""API errors in a reconcile: transient ones are retried, refusals of a child stall.

The real API server path is covered by tests/e2e; here the server's failure is scripted,
which the sandbox cannot do on demand.
"""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

import httpx
import pytest
from kubernetes import client
from pydantic import ValidationError

from llmservice.api import LLMServiceStatus
from llmservice.controller.autoscaler import Evaluation
from llmservice.controller.kinds import Kind
from llmservice.controller.reconcile import Context, _evolve, reconcile
from llmservice.controller.scaling import Decision, Load
from llmservice.controller.store import ClusterStore
from llmservice.controller.throughput import ThroughputTracker

BODY: dict[str, Any] = {
    "apiVersion": "serving.llmservice.dev/v1alpha1",
    "kind": "LLMService",
    "metadata": {"name": "chat", "namespace": "default", "uid": "u1", "generation": 3},
    "spec": {"model": {"name": "Qwen/Qwen2.5-0.5B-Instruct"}},
}


def _context(api: Any, http: httpx.AsyncClient, **extra: Any) -> Context:
    """A reconcile's context around a scripted ``api``, with an empty cluster store."""
    return Context(
        api=api,
        store=ClusterStore(),
        throughput=ThroughputTracker(http),
        monitoring_crd_installed=False,
        **extra,
    )


def _written(namespace: str, name: str, status: LLMServiceStatus) -> dict[str, Any]:
    """The LLMService as a status patch leaves it, as far as the store needs."""
    return {
        **BODY,
        "metadata": {**BODY["metadata"], "namespace": namespace, "name": name},
        "status": status.model_dump(mode="json", by_alias=True, exclude_none=True),
    }


class UnavailableAPI:
    """Every apply fails with 503; status patches are recorded."""

    def __init__(self) -> None:
        self.statuses: list[LLMServiceStatus] = []

    async def apply(self, kind: Kind, obj: Any) -> dict[str, Any]:
        raise client.ApiException(status=503, reason="Service Unavailable")

    async def patch_status(
        self, namespace: str, name: str, status: LLMServiceStatus, version: str | None = None
    ) -> dict[str, Any]:
        self.statuses.append(status)
        return _written(namespace, name, status)


def test_transient_error_sets_reconciling_and_propagates() -> None:
    api = UnavailableAPI()

    async def scenario() -> None:
        async with httpx.AsyncClient() as http:
            context = _context(api, http)
            with pytest.raises(client.ApiException):
                await reconcile(BODY, context)

    asyncio.run(scenario())
    (status,) = api.statuses
    (reconciling,) = status.conditions or []
    assert reconciling.type == "Reconciling"
    assert reconciling.status == "True"
    assert reconciling.reason == "APIError"
    assert reconciling.observed_generation == 3
    assert "503" in reconciling.message


class RefusingAPI:
    """The Ingress is refused with the API server's 422; everything else applies."""

    def __init__(self) -> None:
        self.applied: list[str] = []
        self.statuses: list[LLMServiceStatus] = []
        self.events: list[tuple[str, str, str]] = []

    async def apply(self, kind: Kind, obj: Any) -> dict[str, Any]:
        self.applied.append(obj["kind"])
        if obj["kind"] == "Ingress":
            error = client.ApiException(status=422, reason="Unprocessable Entity")
            error.body = json.dumps(
                {
                    "kind": "Status",
                    "reason": "Invalid",
                    "code": 422,
                    "details": {
                        "causes": [
                            {
                                "field": "metadata.annotations",
                                "message": "Too long: may not be more than 262144 bytes",
                            }
                        ]
                    },
                }
            )
            raise error
        return {**obj, "metadata": {**obj["metadata"], "resourceVersion": "1"}}

    async def patch_status(
        self, namespace: str, name: str, status: LLMServiceStatus, version: str | None = None
    ) -> dict[str, Any]:
        self.statuses.append(status)
        return _written(namespace, name, status)

    async def emit_event(self, owner: Any, event_type: str, reason: str, note: str) -> None:
        self.events.append((event_type, reason, note))


def test_refused_child_stalls_with_the_spec_field_named_once() -> None:
    api = RefusingAPI()
    body = copy.deepcopy(BODY)
    body["spec"]["ingress"] = {"enabled": True, "host": "chat.example.com"}

    async def scenario() -> None:
        async with httpx.AsyncClient() as http:
            context = _context(api, http)
            await reconcile(body, context)
            # The next pass reads the status it wrote: the Ingress is not sent again, and
            # nothing changed, so nothing is written.
            stored = api.statuses[-1].model_dump(mode="json", by_alias=True, exclude_none=True)
            await reconcile({**body, "status": stored}, context)

    asyncio.run(scenario())
    assert api.applied.count("Ingress") == 1
    (status,) = api.statuses
    by_type = {condition.type: condition for condition in status.conditions or []}
    assert (by_type["Stalled"].status, by_type["Stalled"].reason) == ("True", "InvalidSpec")
    assert (by_type["Ready"].status, by_type["Reconciling"].status) == ("False", "False")
    assert by_type["Stalled"].message.startswith(
        "spec.ingress.annotations: Too long: may not be more than 262144 bytes"
        " (refused in Ingress chat metadata.annotations)"
    )
    assert api.events == [("Warning", "InvalidSpec", by_type["Stalled"].message)]


def test_a_misspelt_status_field_is_an_error() -> None:
    with pytest.raises(ValidationError, match="observedGenration"):
        _evolve(LLMServiceStatus(), observedGenration=1)


class FlappingStatusAPI(RefusingAPI):
    """Everything applies; the first ``failures`` status patches fail with 503."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def apply(self, kind: Kind, obj: Any) -> dict[str, Any]:
        self.applied.append(obj["kind"])
        return {**obj, "metadata": {**obj["metadata"], "resourceVersion": "1"}}

    async def patch_status(
        self, namespace: str, name: str, status: LLMServiceStatus, version: str | None = None
    ) -> dict[str, Any]:
        if self.failures:
            self.failures -= 1
            raise client.ApiException(status=503, reason="Service Unavailable")
        self.statuses.append(status)
        return _written(namespace, name, status)


class ScaleUpTo:
    """An autoscaler that decides one step up to ``replicas``."""

    def __init__(self, replicas: int) -> None:
        self.replicas = replicas

    async def evaluate(self, *args: Any) -> Evaluation:
        return Evaluation(
            Decision(self.replicas, "ScaleUp", ""),
            Load(value=30.0, demand=True, idle_seconds=0.0),
            "RequestsInFlight",
            8.0,
        )


@pytest.mark.parametrize(
    ("failures", "recorded"),
    [(1, True), (2, False)],
    ids=["recorded-after-the-status-write-failed", "best-effort-when-that-fails-too"],
)
def test_a_scaling_step_is_kept_in_the_status_when_the_reconcile_fails_after_it(
    failures: int, recorded: bool
) -> None:
    """The step's reconcile scaled the Deployment but could not write its status: the next
    reconcile would find the Deployment at the new size and decide nothing, so the step is
    recorded on its own (the autoscaling field alone) before the error goes on."""
    api = FlappingStatusAPI(failures)
    body = copy.deepcopy(BODY)
    body["spec"]["engine"] = {"autoscaling": {"enabled": True, "minReplicas": 1, "maxReplicas": 3}}

    async def scenario() -> None:
        async with httpx.AsyncClient() as http:
            context = _context(api, http, autoscaler=ScaleUpTo(3))
            with pytest.raises(client.ApiException):
                await reconcile(body, context)

    asyncio.run(scenario())
    assert ("Normal", "ScaleUp") in [(kind, reason) for kind, reason, _ in api.events]
    if not recorded:
        assert api.statuses == []
        return
    (status,) = api.statuses
    document = status.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert list(document) == ["autoscaling"]  # the rest of the status is left as it is
    step = document["autoscaling"]["lastDecision"]
    assert (step["from"], step["to"], step["reason"]) == (1, 3, "ScaleUp")
    assert document["autoscaling"]["desiredReplicas"] == 3
