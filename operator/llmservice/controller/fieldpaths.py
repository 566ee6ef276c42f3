"""Which LLMService field a child's field comes from, so a refusal names the user's field.

Each row ties a field of one child (as validation errors spell it) to the spec field it is
rendered from. For the lists where the operator puts entries of its own first and the
user's after them (env, tolerations, args), the user's index is the child's index minus the
operator's entries, counted on the rendered child itself: the operator's entries never
shift the index the user sees, and the table needs no update when they change.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from llmservice.api import LLMService
from llmservice.controller.refusals import Cause, Refusal
from llmservice.render import naming

__all__ = ["SOURCES", "Source", "describe", "spec_field"]

CONTAINER = "spec.template.spec.containers[0]"
POD = "spec.template.spec"
COMPONENT_LABEL = "app.kubernetes.io/component"
INDEX = re.compile(r"^\[(\d+)\]")


@dataclass(frozen=True)
class Source:
    kind: str
    component: str | None  # the child's component label; None for any
    child: str  # field path in the child
    spec: str  # field path in the LLMService
    # Whether what follows `child` in the path follows `spec` too (same shape below).
    same_shape: bool = False
    # For lists of the operator's entries then the user's: the user's list in the spec.
    user_list: Callable[[LLMService], Sequence[Any] | None] | None = None
    # The spec field that the operator's own entries of that list come from.
    own: str | None = None


def _gpu_limits(service: LLMService) -> list[str]:
    name = service.spec.engine.gpu_resource_name
    return [f"{CONTAINER}.resources.{part}[{name}]" for part in ("limits", "requests")]


SOURCES: tuple[Source, ...] = (
    # The engine Deployment.
    Source("Deployment", naming.ENGINE, f"{CONTAINER}.env", "spec.engine.env", True,
           lambda s: s.spec.engine.env),
    # The operator's own toleration is for the GPU resource's taint.
    Source("Deployment", naming.ENGINE, f"{POD}.tolerations", "spec.engine.tolerations", True,
           lambda s: s.spec.engine.tolerations, own="spec.engine.gpuResourceName"),
    Source("Deployment", naming.ENGINE, f"{CONTAINER}.args", "spec.engine.extraArgs", True,
           lambda s: s.spec.engine.extra_args),
    Source("Deployment", naming.ENGINE, f"{CONTAINER}.resources", "spec.engine.resources", True),
    Source("Deployment", naming.ENGINE, f"{CONTAINER}.image", "spec.engine.image"),
    # The first volume and mount are the shared-memory emptyDir; the others hold the model.
    Source("Deployment", naming.ENGINE, f"{CONTAINER}.volumeMounts[0]", "spec.engine.shmSize"),
    Source("Deployment", naming.ENGINE, f"{POD}.volumes[0]", "spec.engine.shmSize"),
    Source("Deployment", naming.ENGINE, f"{CONTAINER}.volumeMounts", "spec.storage.mountPath"),
    Source("Deployment", naming.ENGINE, f"{POD}.nodeSelector", "spec.engine.nodeSelector", True),
    Source("Deployment", naming.ENGINE, f"{POD}.priorityClassName",
           "spec.engine.priorityClassName"),
    Source("Deployment", naming.ENGINE, "spec.replicas", "spec.engine.replicas"),
    # The router Deployment.
    Source("Deployment", naming.ROUTER, f"{CONTAINER}.resources", "spec.router.resources", True),
    Source("Deployment", naming.ROUTER, f"{CONTAINER}.image", "spec.router.image"),
    Source("Deployment", naming.ROUTER, "spec.replicas", "spec.router.replicas"),
    # The Ingress.
    Source("Ingress", None, "metadata.annotations", "spec.ingress.annotations", True),
    Source("Ingress", None, "spec.ingressClassName", "spec.ingress.className"),
    Source("Ingress", None, "spec.tls[0].secretName", "spec.ingress.tls.secretName"),
    Source("Ingress", None, "spec.tls[0].hosts", "spec.ingress.host"),
    Source("Ingress", None, "spec.rules[0].host", "spec.ingress.host"),
    Source("Ingress", None, "spec.rules[0].http.paths[0].path", "spec.ingress.path"),
    # The model cache claim.
    Source("PersistentVolumeClaim", None, "spec.resources", "spec.storage.size"),
    Source("PersistentVolumeClaim", None, "spec.storageClassName", "spec.storage.storageClassName"),
    Source("PersistentVolumeClaim", None, "spec.accessModes", "spec.storage.accessModes"),
    # Label maps copied from the spec.
    Source("NetworkPolicy", naming.ENGINE, "spec.ingress[0].from[2].namespaceSelector.matchLabels",
           "spec.networkPolicy.monitoringNamespaceLabels", True),
    Source("ServiceMonitor", None, "metadata.labels", "spec.monitoring.labels", True),
    # Every child is named after the LLMService.
    Source("", None, "metadata.name", "metadata.name"),
)  # fmt: skip


def _get(obj: Any, path: str) -> Any:
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        if part.startswith("["):
            index = int(part[1:-1])
            obj = obj[index] if isinstance(obj, list) and index < len(obj) else None
        else:
            obj = obj.get(part) if isinstance(obj, Mapping) else None
    return obj


def _under(field: str, prefix: str) -> str | None:
    """The rest of `field` below `prefix` ("" for the prefix itself), or None."""
    if field == prefix:
        return ""
    if field.startswith(prefix) and field[len(prefix)] in ".[":
        return field[len(prefix) :]
    return None


def spec_field(field: str, child: Mapping[str, Any], service: LLMService) -> str | None:
    """The LLMService field that `field` of the rendered `child` comes from, if known."""
    if not field:
        return None
    kind = str(child.get("kind"))
    component = ((child.get("metadata") or {}).get("labels") or {}).get(COMPONENT_LABEL)
    if kind == "Deployment" and component == naming.ENGINE:
        for gpu in _gpu_limits(service):
            if _under(field, gpu) is not None:
                return "spec.engine.gpuResourceName"
    for source in SOURCES:
        if source.kind not in ("", kind) or source.component not in (None, component):
            continue
        rest = _under(field, source.child)
        if rest is None:
            continue
        if not source.same_shape:
            return source.spec
        index = INDEX.match(rest)
        if source.user_list is None or index is None:
            return source.spec + rest
        rendered = _get(child, source.child)
        user = source.user_list(service) or []
        position = int(index[1]) - (len(rendered or []) - len(user))
        if position < 0:
            return source.own or source.spec
        return f"{source.spec}[{position}]{rest[index.end() :]}"
    return None


def describe(refused: Refusal, child: Mapping[str, Any], service: LLMService) -> str:
    """One sentence per cause, the LLMService field first, then where the child has it."""
    sentences = [_sentence(refused, cause, child, service) for cause in refused.causes]
    return "; ".join(dict.fromkeys(sentences))  # the API server may say one thing twice


def _sentence(refused: Refusal, cause: Cause, child: Mapping[str, Any], service: LLMService) -> str:
    where = f"{refused.kind} {refused.name}"
    if cause.field:
        where += f" {cause.field}"
    origin = spec_field(cause.field, child, service)
    if origin is None:
        return f"{where}: {cause.message}"
    return f"{origin}: {cause.message} (refused in {where})"
