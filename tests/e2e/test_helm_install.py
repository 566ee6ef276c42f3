"""`helm install` on the sandbox: the chart installs the CRD and the operator into a fresh
namespace made by `--create-namespace`, Pod Security would admit the Pod under `restricted`,
the operator runs as the chart's ServiceAccount and makes an LLMService Ready, and
`helm uninstall` removes what the install created except the CRD, which Helm keeps.

Only one operator may run at a time, or two would reconcile the same LLMServices: the module
starts after the operators of earlier modules have stopped, and ends only when its own has,
with the CRD and the namespace deleted, so the modules after it see a bare cluster.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes import client

from llmservice.sandbox.apiclient import found
from llmservice.sandbox.cluster import Sandbox
from llmservice.sandbox.runtime.records import PodProcess, load_all
from tests.e2e.crds import wait_established
from tests.e2e.helm import CHART, RELEASE, Helm
from tests.e2e.llmservices import wait_ready
from tests.e2e.probes import answers
from tests.e2e.waiting import eventually

pytestmark = pytest.mark.e2e

CRD = "llmservices.serving.llmservice.dev"
GROUP, VERSION, PLURAL = "serving.llmservice.dev", "v1alpha1", "llmservices"
POD_SELECTOR = f"app.kubernetes.io/name=llmservice-operator,app.kubernetes.io/instance={RELEASE}"
READY_TIMEOUT = 180


@dataclass(frozen=True)
class Release:
    namespace: str
    helm: Helm
    output: str


def crd_gone(kube: client.ApiClient) -> bool:
    extensions = client.ApiextensionsV1Api(kube)
    return not found(lambda: extensions.read_custom_resource_definition(CRD))


def live_operators(sandbox: Sandbox, namespace: str | None = None) -> list[PodProcess]:
    """Operator processes the local runtime runs, in `namespace` or anywhere."""
    return [
        pod
        for pod in load_all(sandbox.dir.runtime).values()
        if pod.component == "operator"
        and namespace in (None, pod.namespace)
        and pod.process.alive()
    ]


@pytest.fixture(scope="module")
def release(
    sandbox: Sandbox, kube: client.ApiClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Release]:
    """`helm install` into a namespace of its own; everything is removed again afterwards."""
    eventually(lambda: crd_gone(kube), timeout=60, what=f"CRD {CRD} from earlier tests to go")
    eventually(lambda: not live_operators(sandbox), timeout=60, what="earlier operators to stop")
    namespace = f"helm-{uuid.uuid4().hex[:8]}"
    helm = Helm(tmp_path_factory.mktemp("helm"), sandbox.kubeconfig)
    output = helm("install", RELEASE, str(CHART), "--namespace", namespace, "--create-namespace")
    yield Release(namespace, helm, output)
    helm("uninstall", RELEASE, "--namespace", namespace, "--ignore-not-found")
    core, extensions = client.CoreV1Api(kube), client.ApiextensionsV1Api(kube)
    if not crd_gone(kube):
        extensions.delete_custom_resource_definition(CRD)
    core.delete_namespace(namespace)
    eventually(lambda: crd_gone(kube), timeout=60, what=f"CRD {CRD} to be deleted")
    eventually(
        lambda: not found(lambda: core.read_namespace(namespace)),
        timeout=120,
        what=f"namespace {namespace} to go",
    )
    eventually(lambda: not live_operators(sandbox), timeout=60, what="the chart's operator to stop")


@pytest.fixture(scope="module")
def operator(release: Release, sandbox: Sandbox) -> PodProcess:
    """The operator's process, once its liveness endpoint answers."""

    def live() -> PodProcess | None:
        pods = live_operators(sandbox, release.namespace)
        return next((p for p in pods if answers(f"http://{p.ip}:{p.port}/healthz")), None)

    return eventually(live, timeout=90, what="the operator process's /healthz to answer")


def ready(pod: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def test_install_reports_deployed_with_notes(release: Release) -> None:
    assert "STATUS: deployed" in release.output, release.output
    assert f"installed in namespace {release.namespace}" in release.output, release.output


def test_crd_becomes_established(release: Release, kube: client.ApiClient) -> None:
    wait_established(kube, CRD)


def test_operator_pod_becomes_ready(
    release: Release, operator: PodProcess, kube: client.ApiClient
) -> None:
    core, apps = client.CoreV1Api(kube), client.AppsV1Api(kube)

    def ready_pod() -> Any:
        pods = core.list_namespaced_pod(release.namespace, label_selector=POD_SELECTOR).items
        return next((p for p in pods if ready(p)), None)

    pod = eventually(ready_pod, timeout=90, what="the operator Pod to be Ready")
    assert pod.metadata.name == operator.name
    assert pod.spec.service_account_name == RELEASE

    def available() -> bool:
        status: Any = apps.read_namespaced_deployment_status(RELEASE, release.namespace).status
        return bool(status.available_replicas == 1)

    eventually(available, timeout=60, what="the operator Deployment to be Available")


def test_pod_security_would_admit_the_pod_under_restricted(
    release: Release, operator: PodProcess, sandbox: Sandbox
) -> None:
    # Helm creates the namespace without Pod Security labels. Labelling it `restricted` in a
    # server-side dry run makes admission check the running Pods and warn about violations.
    result = subprocess.run(
        ["kubectl", "--kubeconfig", str(sandbox.kubeconfig), "label", "--dry-run=server",
         "--overwrite", "namespace", release.namespace,
         "pod-security.kubernetes.io/enforce=restricted"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "violate" not in result.stderr, result.stderr


def minimal(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "LLMService",
        "metadata": {"name": name},
        "spec": {"model": {"name": "Qwen/Qwen2.5-0.5B-Instruct"}},
    }


def test_operator_makes_an_llmservice_ready(
    operator: PodProcess, kube: client.ApiClient, namespace: str
) -> None:
    # The operator acts as the chart's ServiceAccount: Ready needs every RBAC rule it uses.
    custom = client.CustomObjectsApi(kube)
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, minimal("chat"))

    # Every status read on the way is checked against the status model.
    wait_ready(custom, namespace, "chat", timeout=READY_TIMEOUT)
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "chat")
    eventually(
        lambda: (
            not found(
                lambda: custom.get_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURAL, "chat"
                )
            )
        ),
        timeout=60,
        what=f"LLMService {namespace}/chat to be deleted",
    )


def test_uninstall_removes_what_install_created(
    release: Release, operator: PodProcess, sandbox: Sandbox, kube: client.ApiClient
) -> None:
    core, apps = client.CoreV1Api(kube), client.AppsV1Api(kube)
    rbac = client.RbacAuthorizationV1Api(kube)
    ns = release.namespace
    reads = {
        "ServiceAccount": lambda: core.read_namespaced_service_account(RELEASE, ns),
        "Deployment": lambda: apps.read_namespaced_deployment(RELEASE, ns),
        "ClusterRole": lambda: rbac.read_cluster_role(RELEASE),
        "ClusterRoleBinding": lambda: rbac.read_cluster_role_binding(RELEASE),
    }
    assert all(found(read) for read in reads.values())
    release.helm("uninstall", RELEASE, "--namespace", ns)

    def deleted() -> bool:
        return not any(found(read) for read in reads.values())

    eventually(deleted, timeout=30, what=f"the {', '.join(reads)} to be deleted")

    def pods_gone() -> bool:
        return not core.list_namespaced_pod(ns, label_selector=POD_SELECTOR).items

    eventually(pods_gone, timeout=120, what="the operator Pod to be deleted")
    eventually(
        lambda: not live_operators(sandbox, ns), timeout=60, what="the operator process to stop"
    )
    assert not release.helm("list", "--namespace", ns, "--short").strip()
    # Helm never deletes what crds/ installed: deleting it would delete every LLMService.
    assert not crd_gone(kube)
