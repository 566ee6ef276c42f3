"""What the e2e cluster policies refuse: Ingresses whose host is under blocked.example.

An LLMService can be valid in itself and still have a child its cluster refuses. The API
server loads a new admission policy or webhook asynchronously and admits everything until
then, so a policy is handed to a test only once a server-side dry run of a probe Ingress
is refused.
"""

from __future__ import annotations

from typing import Any

from kubernetes import client

from tests.e2e.waiting import eventually

BLOCKED_SUFFIX = ".blocked.example"
HOST_FIELD = "spec.rules[0].host"
REFUSAL = "hosts under blocked.example are reserved"
# Policies are cluster-scoped: each is bound to the test's namespace only.
NAMESPACE_LABEL = "kubernetes.io/metadata.name"
INGRESS_WRITES = {
    "apiGroups": ["networking.k8s.io"],
    "apiVersions": ["v1"],
    "operations": ["CREATE", "UPDATE"],
    "resources": ["ingresses"],
}


def is_blocked(host: str) -> bool:
    return host.endswith(BLOCKED_SUFFIX)


def _probe_ingress() -> dict[str, Any]:
    backend = {"service": {"name": "probe", "port": {"number": 80}}}
    path = {"path": "/", "pathType": "Prefix", "backend": backend}
    rule = {"host": f"probe{BLOCKED_SUFFIX}", "http": {"paths": [path]}}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": "policy-probe"},
        "spec": {"rules": [rule]},
    }


def _dry_run_refusal(
    networking: client.NetworkingV1Api, namespace: str
) -> client.ApiException | None:
    """The API server's answer to creating a blocked Ingress (nothing is stored), if refused."""
    try:
        networking.create_namespaced_ingress(namespace, _probe_ingress(), dry_run="All")
    except client.ApiException as refused:
        return refused
    return None


def wait_enforced(
    kube: client.ApiClient, namespace: str, what: str, timeout: float = 60
) -> client.ApiException:
    """The refusal of the probe Ingress, once `what` refuses it, for the caller to check."""
    networking = client.NetworkingV1Api(kube)
    return eventually(
        lambda: _dry_run_refusal(networking, namespace),
        timeout,
        f"{what} to refuse a probe Ingress",
    )
