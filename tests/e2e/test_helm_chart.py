"""The Helm chart renders what `kubectl kustomize deploy/` renders, so the two install paths
cannot drift: the same objects and names (without the Namespace, which Helm creates), the
same CRD, identical RBAC rules and an identical operator Pod spec. Its values reach the Pod
without loosening what the defaults fix.

No cluster: `helm template` only. The tests live in tests/e2e because helm comes from the
sandbox build, which `make test-e2e` runs first.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from llmservice.render.policies import OPERATOR_SELECTOR
from llmservice.sandbox.runtime.workloads import component_of
from tests.e2e.helm import CHART, RELEASE, Helm
from tests.unit.deploy.manifests import kustomized_objects
from tests.unit.render.schemas import validate_object

pytestmark = pytest.mark.e2e

NAMESPACE = "llmservice-system"
Key = tuple[str, str]


def key(obj: dict[str, Any]) -> Key:
    return obj["kind"], obj["metadata"]["name"]


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(tmp_path_factory.mktemp("helm"))


@pytest.fixture(scope="module")
def kustomized() -> dict[Key, dict[str, Any]]:
    objects = kustomized_objects()
    assert objects is not None, "kubectl is not on the PATH (`kubectl kustomize deploy/`)"
    return {key(o): o for o in objects}


@pytest.fixture(scope="module")
def charted(helm: Helm) -> dict[Key, dict[str, Any]]:
    """The chart with default values, released as deploy/ installs it."""
    objects = helm.template(namespace=NAMESPACE)
    keyed = {key(o): o for o in objects}
    assert len(keyed) == len(objects), "two objects share a kind and name"
    return keyed


def the(objects: dict[Key, dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [o for (k, _), o in objects.items() if k == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def deployment(objects: list[dict[str, Any]]) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == "Deployment"]
    assert len(found) == 1
    return found[0]


def test_chart_renders_the_objects_of_deploy_but_the_namespace(
    charted: dict[Key, dict[str, Any]], kustomized: dict[Key, dict[str, Any]]
) -> None:
    assert set(charted) == set(kustomized) - {("Namespace", NAMESPACE)}


def test_crd_is_the_generated_one(
    charted: dict[Key, dict[str, Any]], kustomized: dict[Key, dict[str, Any]]
) -> None:
    kind = "CustomResourceDefinition"
    assert the(charted, kind) == the(kustomized, kind)


def test_namespaced_objects_go_to_the_release_namespace(
    charted: dict[Key, dict[str, Any]], kustomized: dict[Key, dict[str, Any]]
) -> None:
    for k, obj in charted.items():
        assert obj["metadata"].get("namespace") == kustomized[k]["metadata"].get("namespace"), k


def test_objects_carry_the_labels_of_deploy(
    charted: dict[Key, dict[str, Any]], kustomized: dict[Key, dict[str, Any]]
) -> None:
    for k, obj in charted.items():
        want = kustomized[k]["metadata"].get("labels", {})
        assert want.items() <= obj["metadata"].get("labels", {}).items(), k


def test_rbac_is_identical(
    charted: dict[Key, dict[str, Any]], kustomized: dict[Key, dict[str, Any]]
) -> None:
    assert the(charted, "ClusterRole")["rules"] == the(kustomized, "ClusterRole")["rules"]
    for field in ("roleRef", "subjects"):
        chart_binding = the(charted, "ClusterRoleBinding")[field]
        assert chart_binding == the(kustomized, "ClusterRoleBinding")[field], field


def test_operator_pod_spec_is_identical(
    charted: dict[Key, dict[str, Any]], kustomized: dict[Key, dict[str, Any]]
) -> None:
    # Containers whole: image, command, args, env, ports, probes, resources, securityContext.
    chart, kustomize = the(charted, "Deployment")["spec"], the(kustomized, "Deployment")["spec"]
    assert chart["template"]["spec"] == kustomize["template"]["spec"]
    unselected = {"selector", "template"}
    assert {k: v for k, v in chart.items() if k not in unselected} == {
        k: v for k, v in kustomize.items() if k not in unselected
    }


def test_operator_pod_keeps_the_labels_it_is_found_by(
    charted: dict[Key, dict[str, Any]], kustomized: dict[Key, dict[str, Any]]
) -> None:
    spec = the(charted, "Deployment")["spec"]
    labels = spec["template"]["metadata"]["labels"]
    assert the(kustomized, "Deployment")["spec"]["template"]["metadata"]["labels"].items() <= (
        labels.items()
    )
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    assert OPERATOR_SELECTOR.items() <= labels.items()
    assert component_of(labels) == "operator"


@pytest.mark.parametrize("kind", ["CustomResourceDefinition", "ServiceAccount", "ClusterRole",
                                  "ClusterRoleBinding", "Deployment"])  # fmt: skip
def test_rendered_object_is_schema_valid(charted: dict[Key, dict[str, Any]], kind: str) -> None:
    validate_object(the(charted, kind))


def test_chart_passes_helm_lint(helm: Helm) -> None:
    helm("lint", "--strict", str(CHART))


def test_another_release_name_prefixes_every_name(helm: Helm) -> None:
    objects = helm.template(release="ml", namespace="ml-system")
    names = {o["metadata"]["name"] for o in objects if o["kind"] != "CustomResourceDefinition"}
    assert names == {"ml-llmservice-operator", "ml-llmservice-operator-metrics"}
    binding = next(o for o in objects if o["kind"] == "ClusterRoleBinding")
    assert binding["subjects"][0]["namespace"] == "ml-system"


def test_service_monitor_only_when_enabled_and_scraping_the_metrics_service(helm: Helm) -> None:
    assert not [o for o in helm.template() if o["kind"] == "ServiceMonitor"]
    objects = helm.template(
        "--set", "metrics.serviceMonitor.enabled=true",
        "--set", "metrics.serviceMonitor.labels.release=kps",
        release="ml", namespace="ml-system",
    )  # fmt: skip
    (monitor,) = [o for o in objects if o["kind"] == "ServiceMonitor"]
    (service,) = [o for o in objects if o["kind"] == "Service"]
    assert monitor["metadata"]["labels"]["release"] == "kps"
    selected = monitor["spec"]["selector"]["matchLabels"]
    assert selected.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["ml-system"]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["honorLabels"]) == ("metrics", True)
    validate_object(monitor)


VALUES: dict[str, Any] = {
    "image": {"repository": "registry.example/llmservice", "tag": "9.9.9", "pullPolicy": "Always"},
    "imagePullSecrets": [{"name": "regcred"}],
    "serviceAccount": {"name": "operator", "annotations": {"iam.example/role": "llm"}},
    "watchNamespaces": ["team-a", "team-b"],
    "verbose": True,
    "extraArgs": ["--resync-interval=30"],
    "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
    "nodeSelector": {"pool": "system"},
    "tolerations": [{"key": "system", "operator": "Exists", "effect": "NoSchedule"}],
    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "pool", "operator": "In", "values": ["system"]}]}]}}},
    "podAnnotations": {"example/scrape": "false"},
    # The chart's own labels win: the Pod must stay selected and recognizable.
    "podLabels": {"team": "ml", "app.kubernetes.io/name": "other"},
}  # fmt: skip


@pytest.fixture(scope="module")
def customized(helm: Helm, tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    values = tmp_path_factory.mktemp("values") / "values.yaml"
    values.write_text(yaml.safe_dump(VALUES), encoding="utf-8")
    return helm.template("--values", str(values), namespace=NAMESPACE)


def test_values_reach_the_operator_pod(
    customized: list[dict[str, Any]], kustomized: dict[Key, dict[str, Any]]
) -> None:
    pod = deployment(customized)["spec"]["template"]
    spec, container = pod["spec"], pod["spec"]["containers"][0]
    assert container["image"] == "registry.example/llmservice:9.9.9"
    assert container["imagePullPolicy"] == "Always"
    assert spec["imagePullSecrets"] == VALUES["imagePullSecrets"]
    assert spec["serviceAccountName"] == "operator"
    assert container["args"] == [
        "operator",
        "--liveness-port=8081",
        "--metrics-port=8080",
        "--namespace=team-a",
        "--namespace=team-b",
        "--verbose",
        "--resync-interval=30",
    ]
    assert container["resources"] == VALUES["resources"]
    # Helm merges a map value into the default one.
    assert spec["nodeSelector"] == {"kubernetes.io/os": "linux", **VALUES["nodeSelector"]}
    for field in ("tolerations", "affinity"):
        assert spec[field] == VALUES[field], field
    assert pod["metadata"]["annotations"] == VALUES["podAnnotations"]
    assert pod["metadata"]["labels"]["team"] == "ml"
    assert pod["metadata"]["labels"]["app.kubernetes.io/name"] == "llmservice-operator"
    # What values never change: the restricted securityContext, probes and ports.
    default = the(kustomized, "Deployment")["spec"]["template"]["spec"]
    assert spec["securityContext"] == default["securityContext"]
    for field in ("securityContext", "livenessProbe", "ports", "command"):
        assert container[field] == default["containers"][0][field], field


def test_service_account_annotations_and_name(customized: list[dict[str, Any]]) -> None:
    account = next(o for o in customized if o["kind"] == "ServiceAccount")
    assert account["metadata"]["name"] == "operator"
    assert account["metadata"]["annotations"] == VALUES["serviceAccount"]["annotations"]
    binding = next(o for o in customized if o["kind"] == "ClusterRoleBinding")
    assert binding["subjects"][0]["name"] == "operator"


def test_an_existing_service_account_must_be_named(helm: Helm) -> None:
    result = helm.run("template", RELEASE, str(CHART), "--set", "serviceAccount.create=false")
    assert result.returncode != 0
    assert "serviceAccount.name is required" in result.stderr
    objects = helm.template("--set", "serviceAccount.create=false,serviceAccount.name=shared")
    assert "ServiceAccount" not in {o["kind"] for o in objects}
    assert deployment(objects)["spec"]["template"]["spec"]["serviceAccountName"] == "shared"
