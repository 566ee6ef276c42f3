"""Names and labels of every child, in one place.

Children are `<name>-<suffix>`; the CRD caps `metadata.name` so the longest suffix still fits
a 63-character DNS label. Selectors use only the immutable subset of the labels (name,
instance, component): a Deployment's selector can never change after creation.
"""

from __future__ import annotations

from llmservice.api import API_VERSION, KIND, LLMService

MANAGED_BY = "llmservice-operator"
PART_OF = "llmservice"
APP_NAME = "llmservice"

ENGINE = "engine"
ROUTER = "router"
MODELS = "models"

ENGINE_PORT = 8000
ROUTER_PORT = 8080
# UDP, between router Pods: the placements they tell each other (`llmservice.router.peers`).
ROUTER_PEER_PORT = 8082
ROUTER_SERVICE_PORT = 80


def engine_name(service: LLMService) -> str:
    return f"{service.name}-{ENGINE}"


def router_name(service: LLMService) -> str:
    return f"{service.name}-{ROUTER}"


def models_claim_name(service: LLMService) -> str:
    return f"{service.name}-{MODELS}"


def router_service_name(service: LLMService) -> str:
    """The front door keeps the LLMService's own name: `http://<name>.<namespace>`."""
    return service.name


def selector_labels(service: LLMService, component: str) -> dict[str, str]:
    """Immutable labels, safe for selectors."""
    return {
        "app.kubernetes.io/name": APP_NAME,
        "app.kubernetes.io/instance": service.name,
        "app.kubernetes.io/component": component,
    }


def selector_string(service: LLMService, component: str) -> str:
    """`selector_labels` as a label selector string, as the scale subresource reports it."""
    return ",".join(f"{k}={v}" for k, v in sorted(selector_labels(service, component).items()))


def labels(service: LLMService, component: str) -> dict[str, str]:
    """Standard labels of one child."""
    return {
        **selector_labels(service, component),
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": MANAGED_BY,
    }


def owner_references(service: LLMService) -> list[dict[str, object]]:
    """The controller reference, once the LLMService has a uid (objects read from the API).

    Files rendered offline have no uid; the controller passes the live object, so what it
    applies always carries the reference and garbage collection removes the children.
    """
    if not service.metadata.uid:
        return []
    return [
        {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": service.name,
            "uid": service.metadata.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def object_meta(
    service: LLMService,
    name: str,
    component: str,
    annotations: dict[str, str] | None = None,
) -> dict[str, object]:
    """`metadata` of one child: name, namespace, standard labels, controller reference."""
    meta: dict[str, object] = {
        "name": name,
        "namespace": service.namespace,
        "labels": labels(service, component),
    }
    if annotations:
        meta["annotations"] = annotations
    references = owner_references(service)
    if references:
        meta["ownerReferences"] = references
    return meta
