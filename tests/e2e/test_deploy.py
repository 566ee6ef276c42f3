"""`kubectl apply -k deploy/` on the sandbox: everything installs, the CRD is Established,
Pod Security admits the operator Pod under `restricted`, and the local runtime runs it as
its ServiceAccount, whose RBAC is checked by the API server itself.

The module applies deploy/ once and deletes it at the end, waiting until the CRD and the
namespace are gone, so the tests around it see the bare cluster they expect.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from llmservice.sandbox import stack
from llmservice.sandbox.apiclient import api_client, found
from llmservice.sandbox.cluster import Sandbox
from llmservice.sandbox.product import Product
from llmservice.sandbox.progress import Progress
from llmservice.sandbox.runtime.records import PodProcess, load_all
from tests.e2e.crds import wait_established
from tests.e2e.installed import assert_runs_product
from tests.e2e.llmservices import get_llms
from tests.e2e.probes import answers
from tests.e2e.waiting import eventually

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CRD = "llmservices.serving.llmservice.dev"
NAMESPACE = "llmservice-system"
ACCOUNT = "llmservice-operator"
OPERATOR_USER = f"system:serviceaccount:{NAMESPACE}:{ACCOUNT}"
GROUP = "serving.llmservice.dev"


def kubectl(sandbox: Sandbox, *args: str) -> str:
    result = subprocess.run(
        ["kubectl", "--kubeconfig", str(sandbox.kubeconfig), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
    return result.stdout


def crd_gone(kube: client.ApiClient) -> bool:
    extensions = client.ApiextensionsV1Api(kube)
    return not found(lambda: extensions.read_custom_resource_definition(CRD))


def namespace_gone(kube: client.ApiClient) -> bool:
    core = client.CoreV1Api(kube)
    return not found(lambda: core.read_namespace(NAMESPACE))


@pytest.fixture(scope="module")
def applied(sandbox: Sandbox, kube: client.ApiClient) -> Iterator[str]:
    """The output of `kubectl apply -k deploy/`; deploy/ is deleted again afterwards."""
    # Another module may have just deleted its copy of the CRD: let that finish first.
    eventually(lambda: crd_gone(kube), timeout=60, what=f"CRD {CRD} from earlier tests to go")
    output = kubectl(sandbox, "apply", "-k", str(DEPLOY))
    yield output
    # LLMServices go first, while the operator runs (should one carry a finalizer).
    kubectl(sandbox, "delete", "llmservices", "--all", "--all-namespaces", "--timeout=60s")
    kubectl(sandbox, "delete", "-k", str(DEPLOY), "--wait=false")
    eventually(lambda: crd_gone(kube), timeout=60, what=f"CRD {CRD} to be deleted")
    eventually(lambda: namespace_gone(kube), timeout=120, what=f"namespace {NAMESPACE} to go")


def operator_process(sandbox: Sandbox) -> PodProcess | None:
    for pod in load_all(sandbox.dir.runtime).values():
        if pod.component == "operator" and pod.namespace == NAMESPACE and pod.process.alive():
            return pod
    return None


@pytest.fixture(scope="module")
def operator(applied: str, sandbox: Sandbox) -> PodProcess:
    """The operator's process, once its liveness endpoint answers."""

    def live() -> PodProcess | None:
        pod = operator_process(sandbox)
        return pod if pod and answers(f"http://{pod.ip}:{pod.port}/healthz") else None

    return eventually(live, timeout=90, what="the operator process's /healthz to answer")


def test_apply_creates_every_object(applied: str) -> None:
    for created in (
        f"customresourcedefinition.apiextensions.k8s.io/{CRD}",
        f"namespace/{NAMESPACE}",
        f"serviceaccount/{ACCOUNT}",
        f"clusterrole.rbac.authorization.k8s.io/{ACCOUNT}",
        f"clusterrolebinding.rbac.authorization.k8s.io/{ACCOUNT}",
        f"deployment.apps/{ACCOUNT}",
    ):
        assert f"{created} created" in applied, applied


def test_crd_becomes_established(applied: str, kube: client.ApiClient) -> None:
    wait_established(kube, CRD)


def test_pod_security_admits_the_operator_pod(applied: str, kube: client.ApiClient) -> None:
    apps = client.AppsV1Api(kube)

    def available() -> bool:
        status: Any = apps.read_namespaced_deployment_status(ACCOUNT, NAMESPACE).status
        return status.available_replicas == 1

    # A Pod that broke the namespace's `restricted` profile would never be created.
    eventually(available, timeout=60, what="the operator Deployment to be Available")
    labels = client.CoreV1Api(kube).read_namespace(NAMESPACE).metadata.labels
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def test_operator_process_runs_as_its_service_account(operator: PodProcess) -> None:
    kubeconfig = Path(operator.process.log).parent / "kubeconfig"
    with api_client(kubeconfig) as api:
        review: Any = client.AuthenticationV1Api(api).create_self_subject_review(
            client.V1SelfSubjectReview()
        )
    assert review.status.user_info.username == OPERATOR_USER
    assert operator.port == 8081


def test_operator_process_runs_the_installed_wheel(operator: PodProcess, product: Product) -> None:
    assert_runs_product(operator.process.pid, product)


def can(kubeconfig: Path, verb: str, group: str, resource: str, namespace: str = "") -> bool:
    """Whether the holder of `kubeconfig` may do it, as the API server's RBAC decides."""
    attributes = client.V1ResourceAttributes(
        verb=verb, group=group, resource=resource, namespace=namespace or None
    )
    with api_client(kubeconfig) as api:
        review: Any = client.AuthorizationV1Api(api).create_self_subject_access_review(
            client.V1SelfSubjectAccessReview(
                spec=client.V1SelfSubjectAccessReviewSpec(resource_attributes=attributes)
            )
        )
    return bool(review.status.allowed)


@pytest.mark.parametrize(
    ("verb", "group", "resource", "allowed"),
    [
        ("watch", GROUP, "llmservices", True),
        ("patch", GROUP, "llmservices/status", True),
        ("update", GROUP, "llmservices/finalizers", True),
        ("watch", "", "pods", True),
        ("patch", "apps", "deployments", True),
        ("create", "rbac.authorization.k8s.io", "roles", True),
        ("delete", "networking.k8s.io", "ingresses", True),
        ("create", "events.k8s.io", "events", True),
        ("get", "apiextensions.k8s.io", "customresourcedefinitions", True),
        # Never: Secrets, deleting LLMServices, changing its own rights.
        ("get", "", "secrets", False),
        ("list", "", "secrets", False),
        ("delete", GROUP, "llmservices", False),
        ("create", "", "pods", False),
        ("escalate", "rbac.authorization.k8s.io", "roles", False),
        ("bind", "rbac.authorization.k8s.io", "roles", False),
        ("patch", "rbac.authorization.k8s.io", "clusterroles", False),
    ],
)
def test_operator_rbac(
    operator: PodProcess, verb: str, group: str, resource: str, allowed: bool
) -> None:
    kubeconfig = Path(operator.process.log).parent / "kubeconfig"
    assert can(kubeconfig, verb, group, resource, namespace="default") is allowed


def role(name: str, namespace: str, resource: str) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": name, "namespace": namespace},
        "rules": [{"apiGroups": [""], "resources": [resource], "verbs": ["get", "list", "watch"]}],
    }


def test_operator_may_grant_the_router_role_and_nothing_more(
    operator: PodProcess, namespace: str
) -> None:
    # RBAC lets nobody grant what they do not hold: the router's Role (Pods) is possible,
    # a Role reading Secrets is not.
    kubeconfig = Path(operator.process.log).parent / "kubeconfig"
    with api_client(kubeconfig) as api:
        rbac = client.RbacAuthorizationV1Api(api)
        rbac.create_namespaced_role(namespace, role("router", namespace, "pods"), dry_run="All")
        with pytest.raises(client.ApiException) as raised:
            rbac.create_namespaced_role(
                namespace, role("reader", namespace, "secrets"), dry_run="All"
            )
    assert raised.value.status == 403
    message = json.loads(raised.value.body or "{}").get("message", "")
    assert "attempting to grant RBAC permissions not currently held" in message, message


def test_sandbox_example_turns_ready_with_tokens_per_second(
    operator: PodProcess,
    sandbox: Sandbox,
    kube: client.ApiClient,
    namespace: str,
    product: Product,
) -> None:
    # What `llmservice sandbox up --traffic` does after installing deploy/.
    progress = Progress(quiet=True)
    stack.apply_example(sandbox, progress, namespace=namespace)
    table = stack.send_traffic_and_show_throughput(sandbox, progress, namespace=namespace)
    header, row = table.splitlines()[:2]
    columns = dict(zip(header.split(), row.split(), strict=False))
    assert columns["NAME"] == stack.EXAMPLE_NAME
    assert columns["READY"] == "True"
    assert float(columns["TOKENS/S"]) > 0, table
    # The engine (simulator) and router processes that served it are the installed wheel.
    served = [p for p in load_all(sandbox.dir.runtime).values() if p.namespace == namespace]
    assert {p.component for p in served} == {"engine", "router"}
    for pod in served:
        assert_runs_product(pod.process.pid, product)
    custom = client.CustomObjectsApi(kube)
    # The status with throughput, as the deployed operator wrote it, read through the model.
    status = get_llms(custom, namespace, stack.EXAMPLE_NAME)["status"]
    assert status["throughput"]["generationTokensPerSecond"] > 0, status
    custom.delete_namespaced_custom_object(
        stack.GROUP, stack.VERSION, namespace, stack.PLURAL, stack.EXAMPLE_NAME
    )

    def deleted() -> bool:
        return not found(
            lambda: custom.get_namespaced_custom_object(
                stack.GROUP, stack.VERSION, namespace, stack.PLURAL, stack.EXAMPLE_NAME
            )
        )

    eventually(deleted, timeout=60, what="the example LLMService to be deleted")
