"""The kinds of child objects: API paths and the names the operator watches them by."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Kind:
    api_version: str
    kind: str
    plural: str

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]

    def collection_path(self, namespace: str) -> str:
        prefix = f"/apis/{self.api_version}" if self.group else f"/api/{self.api_version}"
        return f"{prefix}/namespaces/{namespace}/{self.plural}"

    def object_path(self, namespace: str, name: str) -> str:
        return f"{self.collection_path(namespace)}/{name}"


CHILD_KINDS: tuple[Kind, ...] = (
    Kind("v1", "PersistentVolumeClaim", "persistentvolumeclaims"),
    Kind("apps/v1", "Deployment", "deployments"),
    Kind("v1", "ServiceAccount", "serviceaccounts"),
    Kind("rbac.authorization.k8s.io/v1", "Role", "roles"),
    Kind("rbac.authorization.k8s.io/v1", "RoleBinding", "rolebindings"),
    Kind("v1", "Service", "services"),
    Kind("networking.k8s.io/v1", "Ingress", "ingresses"),
    Kind("monitoring.coreos.com/v1", "ServiceMonitor", "servicemonitors"),
    Kind("monitoring.coreos.com/v1", "PrometheusRule", "prometheusrules"),
    Kind("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets"),
    Kind("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies"),
)
BY_KIND = {kind.kind: kind for kind in CHILD_KINDS}
SERVICE_MONITOR = BY_KIND["ServiceMonitor"]
SERVICE_MONITOR_CRD = "servicemonitors.monitoring.coreos.com"
PROMETHEUS_RULE = BY_KIND["PrometheusRule"]
PROMETHEUS_RULE_CRD = "prometheusrules.monitoring.coreos.com"
LLMSERVICE = Kind("serving.llmservice.dev/v1alpha1", "LLMService", "llmservices")


def key_of(obj: Mapping[str, Any]) -> tuple[str, str, str]:
    """(kind, namespace, name): how children are identified across desired and live."""
    meta = obj.get("metadata") or {}
    return str(obj.get("kind")), str(meta.get("namespace")), str(meta.get("name"))
