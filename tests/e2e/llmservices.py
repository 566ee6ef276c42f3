"""Reading and writing LLMServices in the e2e tests.

Every status read here is validated against the status model and must read back exactly as
the model writes it: a field the operator misspelt, or one the CRD and the model disagree
on, fails the test that saw it.
"""

from __future__ import annotations

from typing import Any

from kubernetes import client

from llmservice.api import LLMServiceStatus
from tests.e2e.waiting import eventually

GROUP, VERSION, PLURAL = "serving.llmservice.dev", "v1alpha1", "llmservices"
READY_TIMEOUT = 120


def checked_status(obj: dict[str, Any]) -> dict[str, Any]:
    """`obj`'s status, after checking it against `LLMServiceStatus`."""
    status: dict[str, Any] = obj.get("status") or {}
    model = LLMServiceStatus.model_validate(status)
    written = model.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert written == status, f"status does not round-trip through the model: {status}"
    return status


def get_llms(custom: client.CustomObjectsApi, namespace: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = custom.get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name
    )
    checked_status(obj)
    return obj


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(
        (c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == kind), {}
    )


def wait_ready(
    custom: client.CustomObjectsApi, namespace: str, name: str, timeout: float = READY_TIMEOUT
) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        obj = get_llms(custom, namespace, name)
        status = obj.get("status") or {}
        if (
            condition(obj, "Ready").get("status") == "True"
            and status.get("observedGeneration") == obj["metadata"]["generation"]
            and condition(obj, "Ready").get("observedGeneration") == obj["metadata"]["generation"]
        ):
            return obj
        return None

    return eventually(ready, timeout, f"LLMService {namespace}/{name} to be Ready")


def create_llms(custom: client.CustomObjectsApi, namespace: str, document: dict[str, Any]) -> None:
    document = {**document, "metadata": {**document["metadata"], "namespace": namespace}}
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, document)


def minimal(name: str = "chat", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "LLMService",
        "metadata": {"name": name},
        "spec": {"model": {"name": "Qwen/Qwen2.5-0.5B-Instruct"}, **spec},
    }
