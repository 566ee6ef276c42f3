"""deploy/ as a security review reads it: valid objects, a restricted operator Pod whose
liveness probe is kopf's endpoint, in a namespace that enforces the restricted profile."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from llmservice.render.policies import OPERATOR_SELECTOR
from llmservice.sandbox.runtime.workloads import component_of
from tests.unit.deploy.manifests import (
    REPO,
    deploy_objects,
    kustomized_objects,
    listed_objects,
    one,
)
from tests.unit.render.schemas import validate_object

NAMESPACE = "llmservice-system"
IMAGE = "ghcr.io/llmservice/llmservice:0.1.0"
LABELS = {
    "app.kubernetes.io/name": "llmservice-operator",
    "app.kubernetes.io/component": "operator",
    "app.kubernetes.io/part-of": "llmservice",
}


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


def operator_pod() -> dict[str, Any]:
    spec: dict[str, Any] = one("Deployment")["spec"]["template"]
    return spec


def operator_container() -> dict[str, Any]:
    containers: list[dict[str, Any]] = operator_pod()["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def test_kustomize_renders_the_listed_files() -> None:
    rendered = kustomized_objects()
    if rendered is None:
        pytest.skip("kubectl is not installed")
    assert sorted(rendered, key=_key) == sorted(listed_objects(), key=_key)


def test_installs_the_crd_namespace_rbac_and_operator() -> None:
    kinds = sorted(_key(o) for o in deploy_objects())
    assert kinds == [
        ("ClusterRole", "llmservice-operator"),
        ("ClusterRoleBinding", "llmservice-operator"),
        ("CustomResourceDefinition", "llmservices.serving.llmservice.dev"),
        ("Deployment", "llmservice-operator"),
        ("Namespace", NAMESPACE),
        ("Service", "llmservice-operator-metrics"),
        ("ServiceAccount", "llmservice-operator"),
    ]


@pytest.mark.parametrize("obj", deploy_objects(), ids=lambda o: "-".join(_key(o)))
def test_every_object_is_schema_valid(obj: dict[str, Any]) -> None:
    validate_object(obj)


@pytest.mark.parametrize("obj", deploy_objects(), ids=lambda o: "-".join(_key(o)))
def test_namespaced_objects_live_in_the_operator_namespace(obj: dict[str, Any]) -> None:
    if obj["kind"] in ("ServiceAccount", "Deployment", "Service"):
        assert obj["metadata"]["namespace"] == NAMESPACE
    else:
        assert "namespace" not in obj["metadata"]


def test_namespace_enforces_the_restricted_pod_security_profile() -> None:
    labels = one("Namespace")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def test_operator_deployment_runs_the_operator_command() -> None:
    deployment = one("Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    container = operator_container()
    assert container["image"] == IMAGE
    assert container["command"] == ["llmservice"]
    assert container["args"][0] == "operator"
    assert operator_pod()["spec"]["serviceAccountName"] == one("ServiceAccount")["metadata"]["name"]


def test_labels_and_an_immutable_selector() -> None:
    deployment = one("Deployment")
    template_labels = operator_pod()["metadata"]["labels"]
    assert LABELS.items() <= deployment["metadata"]["labels"].items()
    assert LABELS.items() <= template_labels.items()
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= template_labels.items()
    assert "app.kubernetes.io/version" not in selector


def test_engine_network_policy_admits_the_operator_pod() -> None:
    # The operator scrapes engine /metrics; the rendered NetworkPolicy selects it by label.
    assert OPERATOR_SELECTOR.items() <= operator_pod()["metadata"]["labels"].items()


def test_sandbox_runtime_runs_the_operator_pod() -> None:
    assert component_of(operator_pod()["metadata"]["labels"]) == "operator"


def test_pod_runs_under_the_restricted_profile() -> None:
    pod = operator_pod()["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for host_namespace in ("hostNetwork", "hostPID", "hostIPC"):
        assert not pod.get(host_namespace), host_namespace
    context = operator_container()["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] == 65532
    assert context["allowPrivilegeEscalation"] is False
    assert context["privileged"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    # The restricted profile allows only these volume types.
    allowed = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "projected", "secret"}
    for volume in pod.get("volumes", []):
        assert set(volume) - {"name"} <= allowed, volume


def test_liveness_probe_is_kopfs_endpoint() -> None:
    container = operator_container()
    probe = container["livenessProbe"]["httpGet"]
    assert probe["path"] == "/healthz"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports[probe["port"]] == 8081
    assert "--liveness-port=8081" in container["args"]


def test_resources_are_requested_and_memory_is_bounded() -> None:
    resources = operator_container()["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"])
    assert "memory" in resources["limits"]


def test_the_metrics_service_selects_the_operator_pod_by_its_metrics_port() -> None:
    service = one("Service")
    pod = operator_pod()
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    (port,) = service["spec"]["ports"]
    declared = {p["name"]: p["containerPort"] for p in operator_container()["ports"]}
    assert port["targetPort"] == "metrics"
    assert f"--metrics-port={declared['metrics']}" in operator_container()["args"]
    # The sandbox's runtime takes the first declared port for the liveness endpoint.
    assert operator_container()["ports"][0]["name"] == "healthz"


def test_the_monitoring_service_monitor_scrapes_the_metrics_service() -> None:
    monitor = yaml.safe_load(
        (REPO / "deploy" / "monitoring" / "servicemonitor.yaml").read_text(encoding="utf-8")
    )
    validate_object(monitor)
    service = one("Service")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["metadata"]["namespace"] == service["metadata"]["namespace"]
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    assert endpoint["honorLabels"] is True
