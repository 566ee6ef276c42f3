"""The shipped Argo CD health script on the statuses the operator really writes.

The script is stored in a real `argocd-cm` ConfigMap under the key Argo CD reads (so the API
server vouches for the key and the text survives the round trip), read back, and run in Lua
5.1 on live LLMServices as they go through the states Argo CD users see: just created,
rolling out a spec change, Ready, Stalled on a GPU request no node can satisfy, and scaled
to zero. Every wait polls the live object with a deadline.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from llmservice.sandbox.cluster import Sandbox
from llmservice.sandbox.product import Product
from tests.e2e.llmservices import (
    GROUP,
    PLURAL,
    READY_TIMEOUT,
    VERSION,
    condition,
    create_llms,
    get_llms,
    minimal,
    wait_ready,
)
from tests.e2e.operator_fixture import OperatorProcess, running_operator
from tests.e2e.waiting import eventually
from tests.unit.deploy.argocd_health import CONFIGMAP_KEY, HEALTH_SCRIPT, Health, argocd_health

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def operator(
    sandbox: Sandbox, llmservice_crd: dict[str, Any], product: Product
) -> Iterator[OperatorProcess]:
    with running_operator(sandbox, product, "operator-argocd.log") as process:
        yield process


@pytest.fixture
def chat(
    operator: OperatorProcess, custom: client.CustomObjectsApi, namespace: str
) -> Iterator[str]:
    """The LLMService's name; it is deleted after the test, so the next one starts clean."""
    yield "chat"
    try:
        custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "chat")
    except client.ApiException as error:
        if error.status != 404:
            raise

    def gone() -> bool:
        try:
            get_llms(custom, namespace, "chat")
        except client.ApiException as error:
            if error.status == 404:
                return True
            raise
        return False

    eventually(gone, 60, "the LLMService to be deleted")


@pytest.fixture
def script(core: client.CoreV1Api, namespace: str) -> str:
    """The health script as Argo CD would read it from its argocd-cm ConfigMap."""
    configmap: Any = {
        "metadata": {"name": "argocd-cm"},
        "data": {CONFIGMAP_KEY: HEALTH_SCRIPT.read_text(encoding="utf-8")},
    }
    core.create_namespaced_config_map(namespace, configmap)
    stored: str = core.read_namespaced_config_map("argocd-cm", namespace).data[CONFIGMAP_KEY]
    return stored


def patch(custom: client.CustomObjectsApi, namespace: str, name: str, spec: dict[str, Any]) -> Any:
    return custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name, {"spec": spec}
    )


def current(obj: dict[str, Any]) -> bool:
    """The status describes the spec as it is now."""
    return (obj.get("status") or {}).get("observedGeneration") == obj["metadata"]["generation"]


def test_new_rolling_ready_and_scaled_to_zero(
    chat: str, custom: client.CustomObjectsApi, namespace: str, script: str
) -> None:
    document = minimal(chat)
    created: dict[str, Any] = custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, document
    )
    # The API server's answer to the create: the object exactly as stored, no status yet.
    assert "status" not in created
    assert argocd_health(created, script) == Health(
        "Progressing", "Waiting for the operator to report status"
    )
    # Whatever the operator has written by now, nothing can be ready yet.
    assert argocd_health(get_llms(custom, namespace, chat), script).status == "Progressing"

    ready = wait_ready(custom, namespace, chat)
    assert argocd_health(ready, script) == Health(
        "Healthy", "Available: the endpoint serves requests"
    )

    # A spec change: until the operator has seen it, the old Ready says nothing.
    changed = patch(custom, namespace, chat, {"engine": {"replicas": 3}})
    generation = changed["metadata"]["generation"]
    assert generation == ready["metadata"]["generation"] + 1
    assert argocd_health(changed, script) == Health(
        "Progressing", f"Waiting for the operator to observe generation {generation}"
    )

    # Then the rollout: every state on the way is Progressing, until Ready at the new
    # generation is Healthy. The rollout must have been seen at least once.
    timeline: list[tuple[str, str, str, Health]] = []

    def rolled_out() -> dict[str, Any] | None:
        obj = get_llms(custom, namespace, chat)
        health = argocd_health(obj, script)
        timeline.append(
            (
                str((obj.get("status") or {}).get("observedGeneration")),
                condition(obj, "Reconciling").get("status", ""),
                condition(obj, "Ready").get("reason", ""),
                health,
            )
        )
        return obj if current(obj) and condition(obj, "Ready").get("status") == "True" else None

    eventually(rolled_out, READY_TIMEOUT, "the scaled-up LLMService to be Ready again")
    *on_the_way, (_, _, _, last) = timeline
    assert last.status == "Healthy", timeline
    assert all(health.status == "Progressing" for *_, health in on_the_way), timeline
    rolling = [
        health
        for observed, reconciling, _, health in on_the_way
        if observed == str(generation) and reconciling == "True"
    ]
    assert any(h.message.startswith("WaitingForEngine: ") for h in rolling), timeline

    # Scaled to zero: the spec asks for nothing and gets it.
    patch(custom, namespace, chat, {"engine": {"replicas": 0}})

    def scaled_to_zero() -> dict[str, Any] | None:
        obj = get_llms(custom, namespace, chat)
        ready_condition = condition(obj, "Ready")
        return obj if current(obj) and ready_condition.get("reason") == "ScaledToZero" else None

    obj = eventually(scaled_to_zero, READY_TIMEOUT, "Ready with reason ScaledToZero")
    health = argocd_health(obj, script)
    assert health.status == "Healthy"
    # Ready=True while the router is up, Ready=False once it reports not ready at zero.
    assert "ScaledToZero: no engine replica runs" in health.message


def test_stalled_is_degraded_with_the_schedulers_reason_until_fixed(
    chat: str, custom: client.CustomObjectsApi, namespace: str, script: str
) -> None:
    create_llms(custom, namespace, minimal(chat, engine={"gpus": 16}))

    def stalled() -> dict[str, Any] | None:
        obj = get_llms(custom, namespace, chat)
        return obj if current(obj) and condition(obj, "Stalled").get("status") == "True" else None

    obj = eventually(stalled, READY_TIMEOUT, "Stalled=True on a GPU request no node has")
    health = argocd_health(obj, script)
    assert health.status == "Degraded"
    assert health.message.startswith("Unschedulable: EngineAvailable: ")
    assert "nvidia.com/gpu" in health.message
    assert health.message.endswith(condition(obj, "Stalled")["message"])

    # Fixing the spec: Progressing at once (the Stalled condition is for the old generation),
    # then Healthy.
    fixed = patch(custom, namespace, chat, {"engine": {"gpus": 1}})
    assert argocd_health(fixed, script).status == "Progressing"
    ready = wait_ready(custom, namespace, chat)
    assert argocd_health(ready, script).status == "Healthy"
