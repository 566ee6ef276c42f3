"""Small manifests the e2e tests create."""

from __future__ import annotations

from typing import Any

GPU = "nvidia.com/gpu"


def deployment(
    name: str,
    *,
    replicas: int = 1,
    gpus: int = 0,
    labels: dict[str, str] | None = None,
    port: int | None = None,
    service_account: str | None = None,
    readiness_path: str | None = None,
) -> Any:
    """A Deployment of one container; `gpus` > 0 adds an nvidia.com/gpu limit.

    `readiness_path` adds an HTTP readinessProbe on the named port `http`.
    """
    pod_labels = {"app": name, **(labels or {})}
    container: dict[str, Any] = {"name": "main", "image": "registry.invalid/e2e:1"}
    if gpus:
        container["resources"] = {"limits": {GPU: str(gpus)}}
    if port is not None:
        container["ports"] = [{"containerPort": port, "name": "http"}]
    if readiness_path is not None:
        container["readinessProbe"] = {
            "httpGet": {"path": readiness_path, "port": "http"},
            "periodSeconds": 1,
            "failureThreshold": 1,
        }
    spec: dict[str, Any] = {"containers": [container]}
    if service_account:
        spec["serviceAccountName"] = service_account
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": pod_labels}, "spec": spec},
        },
    }
