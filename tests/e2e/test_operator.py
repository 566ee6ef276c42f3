"""The operator on the sandbox: apply an LLMService, watch it become a running stack.

Real API server, scheduler, controllers and kwok nodes; the local runtime runs the
simulator for engine Pods and the router for router Pods. Every wait polls a condition with
a deadline.
"""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from llmservice.api.validation import parse_llmservice
from llmservice.sandbox import audit
from llmservice.sandbox.cluster import Sandbox
from llmservice.sandbox.pki import Pki
from llmservice.sandbox.product import Product
from tests.e2e.admission_policy import policy_blocking_hosts
from tests.e2e.admission_webhook import webhook_blocking_hosts
from tests.e2e.blocked_hosts import BLOCKED_SUFFIX, HOST_FIELD, REFUSAL
from tests.e2e.llmservices import (
    GROUP,
    PLURAL,
    READY_TIMEOUT,
    VERSION,
    condition,
    create_llms,
    get_llms,
    minimal,
    wait_ready,
)
from tests.e2e.operator_fixture import OperatorProcess, running_operator
from tests.e2e.waiting import eventually, holds_for

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
INSTANCE = "app.kubernetes.io/instance=chat"
GPU = "nvidia.com/gpu"


@pytest.fixture(scope="module")
def gpu_nodes_labelled(kube: client.ApiClient) -> None:
    """GPU nodes carry the product label that GPU feature discovery sets (full.yaml needs it)."""
    core = client.CoreV1Api(kube)
    for node in core.list_node().items:
        core.patch_node(
            node.metadata.name,
            {"metadata": {"labels": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}}},
        )


@pytest.fixture(scope="module")
def operator(
    sandbox: Sandbox, llmservice_crd: dict[str, Any], gpu_nodes_labelled: None, product: Product
) -> Iterator[OperatorProcess]:
    with running_operator(sandbox, product, "operator-e2e.log") as process:
        yield process


def volume_for(core: client.CoreV1Api, namespace: str, document: dict[str, Any]) -> None:
    """A volume the claim can bind to: the sandbox has no storage provisioner."""
    storage = document["spec"].get("storage") or {}
    if not storage.get("enabled"):
        return
    spec: dict[str, Any] = {
        "capacity": {"storage": "1Ti"},
        "accessModes": ["ReadWriteOnce", "ReadWriteMany"],
        "hostPath": {"path": f"/tmp/llmservice-e2e/{namespace}"},
        "persistentVolumeReclaimPolicy": "Delete",
        "claimRef": {"namespace": namespace, "name": f"{document['metadata']['name']}-models"},
        "storageClassName": storage.get("storageClassName", ""),
    }
    core.create_persistent_volume(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": f"pv-{namespace}"},
            "spec": spec,
        }
    )


# A valid keys file for the router (it refuses to start on an invalid one).
API_KEYS = "keys:\n  - name: e2e\n    key: sk-e2e-0123456789abcdef\n"


def create_secret(core: client.CoreV1Api, namespace: str, name: str, key: str, value: str) -> None:
    secret: Any = {"metadata": {"name": name}, "stringData": {key: value}}
    core.create_namespaced_secret(namespace, secret)


def secrets_for(core: client.CoreV1Api, namespace: str, document: dict[str, Any]) -> None:
    """The Secrets an example refers to, as its users would have created them."""
    spec = parse_llmservice(document).spec  # with the defaults, such as the token's key
    token = spec.model.hf_token_secret_ref
    if token:
        create_secret(core, namespace, token.name, token.key, "hf_e2e")
    keys = spec.router.api_keys_secret_ref
    if keys:
        create_secret(core, namespace, keys.name, keys.key, API_KEYS)


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.stem for e in EXAMPLES])
def test_every_example_becomes_ready(
    operator: OperatorProcess,
    custom: client.CustomObjectsApi,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    namespace: str,
    example: Path,
) -> None:
    document = yaml.safe_load(example.read_text(encoding="utf-8"))
    volume_for(core, namespace, document)
    secrets_for(core, namespace, document)
    create_llms(custom, namespace, document)
    name = document["metadata"]["name"]
    obj = wait_ready(custom, namespace, name)
    # Ready needs every engine replica but one router replica (the endpoint then serves);
    # the other router replicas follow as their probes pass.
    for deployment in (f"{name}-engine", f"{name}-router"):
        eventually(
            lambda d=deployment: (
                (status := apps.read_namespaced_deployment_status(d, namespace).status)
                and status.available_replicas == status.replicas
            ),
            60,
            f"every replica of {deployment} to be available",
        )
    assert re.fullmatch(r"\d+/\d+", obj["status"]["replicaSummary"])
    assert obj["status"]["endpoint"] == f"http://{name}.{namespace}.svc/v1"
    monitoring = condition(obj, "MonitoringConfigured")
    if document["spec"].get("monitoring", {}).get("serviceMonitor", True):
        assert monitoring["status"] == "False"
        assert monitoring["reason"] == "CRDNotInstalled"
    services = {s.metadata.name for s in core.list_namespaced_service(namespace).items}
    assert {name, f"{name}-engine"} <= services


def test_scale_up_rolls_out_and_status_follows(
    operator: OperatorProcess, custom: client.CustomObjectsApi, namespace: str
) -> None:
    create_llms(custom, namespace, minimal())
    wait_ready(custom, namespace, "chat")
    custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        "chat",
        {"spec": {"engine": {"replicas": 3}, "model": {"quantization": "awq"}}},
    )
    obj = wait_ready(custom, namespace, "chat")
    assert obj["status"]["readyReplicas"] == 3
    assert obj["status"]["replicaSummary"] == "3/3"


def test_unschedulable_gpu_request_is_explained(
    operator: OperatorProcess, custom: client.CustomObjectsApi, namespace: str
) -> None:
    create_llms(custom, namespace, minimal(engine={"gpus": 16}))

    def explained() -> dict[str, Any] | None:
        obj = get_llms(custom, namespace, "chat")
        engine = condition(obj, "EngineAvailable")
        return obj if engine.get("reason") == "Unschedulable" else None

    obj = eventually(explained, READY_TIMEOUT, "EngineAvailable=False with reason Unschedulable")
    assert condition(obj, "EngineAvailable")["status"] == "False"
    assert "nvidia.com/gpu" in condition(obj, "EngineAvailable")["message"]
    assert condition(obj, "Stalled")["status"] == "True"
    assert condition(obj, "Ready")["status"] == "False"


def test_missing_secrets_are_named_until_they_exist(
    operator: OperatorProcess,
    custom: client.CustomObjectsApi,
    core: client.CoreV1Api,
    namespace: str,
) -> None:
    token_ref = {"name": "hf-token", "key": "token"}
    keys_ref = {"name": "chat-api-keys", "key": "keys.yaml"}
    document = minimal(router={"apiKeysSecretRef": keys_ref})
    document["spec"]["model"]["hfTokenSecretRef"] = token_ref
    create_llms(custom, namespace, document)

    def stalled_on(component: str, secret: str) -> dict[str, Any] | None:
        obj = get_llms(custom, namespace, "chat")
        named = condition(obj, component)
        if named.get("reason") == "SecretNotFound" and secret in named.get("message", ""):
            return obj
        return None

    # The engine cannot start without its token (the kubelet's CreateContainerConfigError).
    obj = eventually(
        lambda: stalled_on("EngineAvailable", '"hf-token"'), READY_TIMEOUT, "the token named"
    )
    assert condition(obj, "Stalled")["status"] == "True"
    assert condition(obj, "Stalled")["reason"] == "SecretNotFound"
    assert '"hf-token"' in condition(obj, "Ready")["message"]
    events = eventually(
        lambda: [
            e
            for e in core.list_namespaced_event(
                namespace, field_selector="involvedObject.name=chat,reason=SecretNotFound"
            ).items
            if e.type == "Warning"
        ],
        30,
        "a SecretNotFound Event on the LLMService",
    )
    assert '"hf-token"' in events[0].message

    # With the token, the engine runs; the router still cannot mount its keys (FailedMount).
    create_secret(core, namespace, "hf-token", "token", "hf_e2e")
    obj = eventually(
        lambda: (
            (obj := stalled_on("RouterAvailable", '"chat-api-keys"'))
            and condition(obj, "EngineAvailable")["status"] == "True"
            and obj
        ),
        READY_TIMEOUT,
        "the engine available and the router's keys named",
    )
    assert condition(obj, "Stalled")["status"] == "True"
    assert condition(obj, "Stalled")["message"].startswith("RouterAvailable: ")

    create_secret(core, namespace, "chat-api-keys", "keys.yaml", API_KEYS)
    obj = wait_ready(custom, namespace, "chat")
    assert condition(obj, "Stalled")["status"] == "False"


def test_crashing_engine_is_explained_and_recovers_when_fixed(
    operator: OperatorProcess, custom: client.CustomObjectsApi, namespace: str
) -> None:
    # The API accepts any extra flag; the engine refuses this value at start and exits.
    bad_flag = "--max-num-batched-tokens=many"
    create_llms(custom, namespace, minimal(engine={"extraArgs": [bad_flag]}))

    def failing() -> dict[str, Any] | None:
        obj = get_llms(custom, namespace, "chat")
        return (
            obj if condition(obj, "EngineAvailable").get("reason") == "ContainerFailing" else None
        )

    obj = eventually(failing, READY_TIMEOUT, "EngineAvailable=False with reason ContainerFailing")
    message = condition(obj, "EngineAvailable")["message"]
    assert message.startswith("CrashLoopBackOff: ")
    assert "max-num-batched-tokens" in message  # the engine's own last words
    assert condition(obj, "Stalled")["status"] == "True"

    custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "chat", {"spec": {"engine": {"extraArgs": []}}}
    )
    obj = wait_ready(custom, namespace, "chat")
    assert condition(obj, "Stalled")["status"] == "False"


def test_drift_is_reverted_and_deleted_children_come_back(
    operator: OperatorProcess,
    custom: client.CustomObjectsApi,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    namespace: str,
) -> None:
    create_llms(custom, namespace, minimal())
    wait_ready(custom, namespace, "chat")
    rendered = apps.read_namespaced_deployment("chat-engine", namespace).spec.template.spec
    image = rendered.containers[0].image
    drift = {
        "metadata": {"labels": {"team": "ml"}},
        "spec": {
            "replicas": 2,
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "vllm",
                            "image": "registry.invalid/other:1",
                            "resources": {"limits": {GPU: "2"}},
                        }
                    ]
                }
            },
        },
    }
    apps.patch_namespaced_deployment("chat-engine", namespace, drift)
    core.delete_namespaced_service("chat", namespace)

    def restored() -> bool:
        deployment = apps.read_namespaced_deployment("chat-engine", namespace)
        container = deployment.spec.template.spec.containers[0]
        services = {s.metadata.name for s in core.list_namespaced_service(namespace).items}
        return (
            deployment.spec.replicas == 1
            and container.image == image
            and container.resources.limits[GPU] == "1"
            and "chat" in services
        )

    eventually(restored, 60, "replicas, image and GPU limit reverted and the Service recreated")
    assert apps.read_namespaced_deployment("chat-engine", namespace).metadata.labels["team"] == "ml"
    wait_ready(custom, namespace, "chat")


def test_turning_the_ingress_off_deletes_it(
    operator: OperatorProcess,
    custom: client.CustomObjectsApi,
    kube: client.ApiClient,
    namespace: str,
) -> None:
    networking = client.NetworkingV1Api(kube)
    create_llms(custom, namespace, minimal(ingress={"enabled": True, "host": "chat.example.com"}))
    wait_ready(custom, namespace, "chat")
    assert [i.metadata.name for i in networking.list_namespaced_ingress(namespace).items] == [
        "chat"
    ]
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "chat", {"spec": {"ingress": {"enabled": False}}}
    )
    eventually(
        lambda: not networking.list_namespaced_ingress(namespace).items,
        60,
        "the Ingress to be deleted",
    )
    wait_ready(custom, namespace, "chat")


def test_deleting_the_llmservice_removes_every_child(
    operator: OperatorProcess,
    custom: client.CustomObjectsApi,
    apps: client.AppsV1Api,
    namespace: str,
) -> None:
    create_llms(custom, namespace, minimal())
    wait_ready(custom, namespace, "chat")
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "chat")
    eventually(
        lambda: not apps.list_namespaced_deployment(namespace).items,
        90,
        "children to be garbage collected",
    )


OPERATOR_WRITES = {
    "deployments", "services", "serviceaccounts", "roles", "rolebindings",
    "poddisruptionbudgets", "networkpolicies", "llmservices", "ingresses",
}  # fmt: skip


def _patch_requests(sandbox: Sandbox, resources: set[str] | None = None) -> int:
    """PATCH requests the API server has served for the resources the operator writes."""
    text = subprocess.run(
        ["kubectl", "--kubeconfig", str(sandbox.kubeconfig), "get", "--raw", "/metrics"],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout  # fmt: skip
    written = resources or OPERATOR_WRITES
    total = 0
    for line in text.splitlines():
        if line.startswith("apiserver_request_total{") and 'verb="PATCH"' in line:
            resource = re.search(r'resource="([^"]*)"', line)
            if resource and resource.group(1) in written:
                total += int(float(line.rsplit(" ", 1)[1]))
    return total


def test_converged_llmservice_makes_no_writes(
    operator: OperatorProcess, sandbox: Sandbox, custom: client.CustomObjectsApi, namespace: str
) -> None:
    create_llms(custom, namespace, minimal())
    wait_ready(custom, namespace, "chat")

    def converged() -> bool:
        # Ready needs one router replica; both (the default is 2) must be ready before the
        # status stops changing, and the first throughput must have been written.
        status = get_llms(custom, namespace, "chat")["status"]
        return bool(status.get("throughput")) and status.get("routerReadyReplicas") == 2

    eventually(converged, 60, "both router replicas ready and the first throughput written")
    start = audit.size(sandbox.dir.audit_log)

    def operator_patches() -> list[str]:
        # From the audit log, in this test's namespace only: LLMServices being deleted by
        # other tests' teardown elsewhere (a finalizer PATCH) do not count.
        return [
            f"{r.verb} {r.resource}/{r.subresource} by {r.agent}"
            for r in audit.read(sandbox.dir.audit_log, start)
            if r.namespace == namespace
            and r.verb == "patch"
            and r.resource in OPERATOR_WRITES
            and (r.subresource == "" or r.resource == "llmservices")
        ]

    # Over three timer intervals (10 s each) a converged LLMService without traffic costs
    # no PATCH at all: no apply, no status write.
    try:
        holds_for(lambda: not operator_patches(), 35, "no PATCH by the operator")
    except AssertionError:
        raise AssertionError(f"a converged LLMService was written: {operator_patches()}") from None


def test_traffic_through_the_router_shows_up_as_tokens_per_second(
    operator: OperatorProcess,
    custom: client.CustomObjectsApi,
    core: client.CoreV1Api,
    namespace: str,
) -> None:
    create_llms(custom, namespace, minimal())
    wait_ready(custom, namespace, "chat")
    pods = core.list_namespaced_pod(
        namespace, label_selector="app.kubernetes.io/component=router"
    ).items
    router_ip = pods[0].status.pod_ip

    def router_ready() -> bool:
        try:
            with urllib.request.urlopen(f"http://{router_ip}:8080/readyz", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    eventually(router_ready, 60, "the router to discover the engine")
    chat = {
        "model": "Qwen/Qwen2.5-0.5B-Instruct",
        "max_tokens": 32,
        "messages": [{"role": "user", "content": "Say hello."}],
    }
    body = json.dumps(chat).encode()

    def tokens_per_second() -> float | None:
        for _ in range(5):
            request = urllib.request.Request(
                f"http://{router_ip}:8080/v1/chat/completions", data=body,
                headers={"Content-Type": "application/json"},
            )  # fmt: skip
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                assert json.loads(response.read())["usage"]["completion_tokens"] > 0
        throughput = get_llms(custom, namespace, "chat")["status"].get("throughput") or {}
        rate = float(throughput.get("generationTokensPerSecond", 0))
        return rate if rate > 0 else None

    assert eventually(tokens_per_second, 120, "non-zero generated tokens per second") > 0


def test_operator_killed_mid_reconcile_converges_after_restart(
    operator: OperatorProcess, custom: client.CustomObjectsApi, apps: client.AppsV1Api,
    core: client.CoreV1Api, namespace: str,
) -> None:  # fmt: skip
    create_llms(custom, namespace, minimal())
    eventually(lambda: apps.list_namespaced_deployment(namespace).items, 60, "a first child")
    operator.kill()
    operator.start()
    obj = wait_ready(custom, namespace, "chat")
    uid = obj["metadata"]["uid"]
    children = [
        *apps.list_namespaced_deployment(namespace).items,
        *core.list_namespaced_service(namespace).items,
        *core.list_namespaced_service_account(namespace, label_selector=INSTANCE).items,
    ]  # fmt: skip
    names = [(type(child).__name__, child.metadata.name) for child in children]
    assert len(names) == len(set(names))
    assert sorted(n for kind, n in names if kind == "V1Deployment") == [
        "chat-engine",
        "chat-router",
    ]
    for child in children:
        owners = child.metadata.owner_references or []
        assert [o.uid for o in owners if o.controller] == [uid], child.metadata.name


def prometheus_operator_crd(kind: str, plural: str) -> dict[str, Any]:
    """Stands in for one of the Prometheus Operator's CRDs: same group, kind and scope; the
    schema is open because only the operator's own objects are stored in it here."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.monitoring.coreos.com"},
        "spec": {
            "group": "monitoring.coreos.com",
            "scope": "Namespaced",
            "names": {
                "kind": kind, "plural": plural,
                "singular": kind.lower(), "listKind": f"{kind}List",
            },
            "versions": [{
                "name": "v1", "served": True, "storage": True,
                "schema": {"openAPIV3Schema": {
                    "type": "object", "x-kubernetes-preserve-unknown-fields": True,
                }},
            }],
        },
    }  # fmt: skip


SERVICE_MONITOR_CRD = prometheus_operator_crd("ServiceMonitor", "servicemonitors")
PROMETHEUS_RULE_CRD = prometheus_operator_crd("PrometheusRule", "prometheusrules")


def test_service_monitors_and_alerts_appear_when_their_crds_are_installed(
    operator: OperatorProcess, sandbox: Sandbox, kube: client.ApiClient,
    custom: client.CustomObjectsApi, namespace: str,
) -> None:  # fmt: skip
    create_llms(custom, namespace, minimal())
    obj = wait_ready(custom, namespace, "chat")
    missing = condition(obj, "MonitoringConfigured")
    assert missing["reason"] == "CRDNotInstalled"
    assert "servicemonitors.monitoring.coreos.com and prometheusrules" in missing["message"]
    extensions = client.ApiextensionsV1Api(kube)
    installed = []
    try:
        extensions.create_custom_resource_definition(SERVICE_MONITOR_CRD)
        installed.append(SERVICE_MONITOR_CRD)

        def only_rules_missing() -> bool:
            current = condition(get_llms(custom, namespace, "chat"), "MonitoringConfigured")
            return current.get("message", "").startswith(
                "the Prometheus Operator CRD prometheusrules.monitoring.coreos.com is not"
            )

        eventually(only_rules_missing, 120, "only the PrometheusRule CRD named as missing")
        monitors = custom.list_namespaced_custom_object(
            "monitoring.coreos.com", "v1", namespace, "servicemonitors"
        )["items"]
        assert sorted(m["metadata"]["name"] for m in monitors) == ["chat-engine", "chat-router"]
        extensions.create_custom_resource_definition(PROMETHEUS_RULE_CRD)
        installed.append(PROMETHEUS_RULE_CRD)

        def configured() -> bool:
            current = get_llms(custom, namespace, "chat")
            return condition(current, "MonitoringConfigured").get("status") == "True"

        eventually(configured, 120, "MonitoringConfigured=True once both CRDs exist")
        rules = custom.list_namespaced_custom_object(
            "monitoring.coreos.com", "v1", namespace, "prometheusrules"
        )["items"]
        assert [r["metadata"]["name"] for r in rules] == ["chat-alerts"]
        alerts = [r["alert"] for r in rules[0]["spec"]["groups"][0]["rules"]]
        assert "LLMServiceStalled" in alerts
        # Once applied, they are watched like every child: no re-apply on each timer tick.
        watched = {"servicemonitors", "prometheusrules"}
        before = _patch_requests(sandbox, watched)
        holds_for(lambda: _patch_requests(sandbox, watched) == before, 25,
                  "no repeated apply of the ServiceMonitors and the PrometheusRule")  # fmt: skip
    finally:
        for crd in installed:
            extensions.delete_custom_resource_definition(crd["metadata"]["name"])


def _events(core: client.CoreV1Api, namespace: str, reason: str) -> list[Any]:
    found: list[Any] = core.list_namespaced_event(
        namespace, field_selector=f"involvedObject.name=chat,reason={reason}"
    ).items
    return [event for event in found if event.type == "Warning"]


def _log_lines_about(operator: OperatorProcess, namespace: str) -> list[dict[str, Any]]:
    """The operator's log lines about LLMServices in `namespace`; every line must be JSON."""
    entries = [
        json.loads(line)
        for line in operator.log_path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    return [entry for entry in entries if entry.get("namespace") == namespace]


def _wait_invalid_spec(
    custom: client.CustomObjectsApi, namespace: str, timeout: float
) -> dict[str, Any]:
    def stalled() -> dict[str, Any] | None:
        obj = get_llms(custom, namespace, "chat")
        found = condition(obj, "Stalled")
        invalid = (found.get("status"), found.get("reason")) == ("True", "InvalidSpec")
        return obj if invalid else None

    return eventually(stalled, timeout, "Stalled=True with reason InvalidSpec")


def _policy_name(namespace: str) -> str:
    return f"blocked-hosts-{namespace}"


@pytest.fixture
def webhook_blocks_hosts(
    kube: client.ApiClient, sandbox: Sandbox, namespace: str
) -> Iterator[client.ApiException]:
    """An admission webhook refuses Ingress hosts under blocked.example in `namespace`."""
    keys = Pki(sandbox.dir.pki)
    with webhook_blocking_hosts(kube, keys, namespace, _policy_name(namespace)) as probe_refused:
        yield probe_refused


@pytest.fixture
def policy_blocks_hosts(kube: client.ApiClient, namespace: str) -> Iterator[client.ApiException]:
    """A ValidatingAdmissionPolicy refuses Ingress hosts under blocked.example in `namespace`."""
    with policy_blocking_hosts(kube, namespace, _policy_name(namespace)) as probe_refused:
        yield probe_refused


def _causes(refused: client.ApiException) -> list[dict[str, Any]]:
    causes: list[dict[str, Any]] = json.loads(refused.body or "{}")["details"]["causes"]
    return causes


def _stalls_on_its_ingress(
    operator: OperatorProcess,
    custom: client.CustomObjectsApi,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    namespace: str,
    prefix: str,
) -> str:
    """An LLMService whose Ingress the cluster refuses stalls, saying so; its message."""
    ingress = {"enabled": True, "host": f"chat{BLOCKED_SUFFIX}"}
    create_llms(custom, namespace, minimal(ingress=ingress))
    obj = _wait_invalid_spec(custom, namespace, READY_TIMEOUT)
    message: str = condition(obj, "Stalled")["message"]
    assert message.startswith(prefix)
    assert REFUSAL in message
    assert (condition(obj, "Ready")["status"], condition(obj, "Ready")["reason"]) == (
        "False",
        "InvalidSpec",
    )
    assert condition(obj, "Reconciling")["status"] == "False"
    events = eventually(lambda: _events(core, namespace, "InvalidSpec"), 30, "a Warning Event")
    assert events[0].message.startswith(prefix)
    # The children the API server accepts are applied all the same.
    assert apps.read_namespaced_deployment("chat-engine", namespace)
    lines = _log_lines_about(operator, namespace)
    refused = [e for e in lines if "Refused" in e["msg"]]
    assert refused
    assert refused[0]["name"] == "chat"
    assert refused[0]["level"] == "warning"
    # The spec's fault, not the operator's: nothing about it is logged as an error.
    assert not [e for e in lines if e["level"] == "error"]
    return message


def _allowed_host_becomes_ready(
    custom: client.CustomObjectsApi, kube: client.ApiClient, namespace: str
) -> None:
    allowed = {"spec": {"ingress": {"host": "chat.example.com"}}}
    custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "chat", allowed)
    obj = wait_ready(custom, namespace, "chat")
    assert condition(obj, "Stalled")["status"] == "False"
    live = client.NetworkingV1Api(kube).read_namespaced_ingress("chat", namespace)
    assert [rule.host for rule in live.spec.rules] == ["chat.example.com"]


def test_child_refused_by_the_api_server_stalls_naming_the_field_until_fixed(
    operator: OperatorProcess,
    custom: client.CustomObjectsApi,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    kube: client.ApiClient,
    namespace: str,
    webhook_blocks_hosts: client.ApiException,
) -> None:
    # The LLMService is valid; the cluster refuses its Ingress the way built-in validation
    # refuses a field: 422 Invalid, the field named in the causes.
    assert webhook_blocks_hosts.status == 422
    assert [c.get("field") for c in _causes(webhook_blocks_hosts)] == [HOST_FIELD]
    message = _stalls_on_its_ingress(operator, custom, core, apps, namespace, "spec.ingress.host: ")
    assert message.endswith(f"(refused in Ingress chat {HOST_FIELD})")
    _allowed_host_becomes_ready(custom, kube, namespace)


def test_child_refused_by_a_policy_naming_no_field_stalls_naming_the_child_until_fixed(
    operator: OperatorProcess,
    custom: client.CustomObjectsApi,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    kube: client.ApiClient,
    namespace: str,
    policy_blocks_hosts: client.ApiException,
) -> None:
    # A policy's refusal is a 422 too, but its one cause names no field: there is no spec
    # field to name, so the message names the child and passes the policy's words on.
    assert policy_blocks_hosts.status == 422
    assert [c.get("field") for c in _causes(policy_blocks_hosts)] == [None]
    message = _stalls_on_its_ingress(operator, custom, core, apps, namespace, "Ingress chat: ")
    assert f"ValidatingAdmissionPolicy '{_policy_name(namespace)}'" in message
    _allowed_host_becomes_ready(custom, kube, namespace)


# Specs the API server admitted before admission rules covered them, whose children it then
# refused (422) or could not even merge (500): each is refused at admission with the field
# named, or admitted and Stalled with the field named; never Reconciling for ever.
REFUSED_CHILDREN = {
    "env repeated": (
        {"engine": {"env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]}},
        "spec.engine.env[1].name",
    ),
    "env set by the operator": (
        {"engine": {"env": [{"name": "DO_NOT_TRACK", "value": "0"}]}},
        "spec.engine.env[0].name",
    ),
    "mount path of the shared memory": (
        {"storage": {"enabled": True, "mountPath": "/dev/shm"}},
        "spec.storage.mountPath",
    ),
    "mount path of the model source": (
        {
            "model": {"name": "pvc://weights/qwen"},
            "storage": {"existingClaim": "cache", "mountPath": "/model-source"},
        },
        "spec.storage.mountPath",
    ),
    "ReadWriteOncePod with other access modes": (
        {"storage": {"enabled": True, "accessModes": ["ReadWriteOncePod", "ReadWriteMany"]}},
        "spec.storage.accessModes",
    ),
    "toleration Exists with a value": (
        {"engine": {"tolerations": [{"key": "k", "operator": "Exists", "value": "v"}]}},
        "spec.engine.tolerations[0]",
    ),
    "requests above limits": (
        {"engine": {"resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}}},
        "spec.engine.resources.requests",
    ),
    "zero cache size": ({"storage": {"enabled": True, "size": "0"}}, "spec.storage.size"),
    "negative shared memory": ({"engine": {"shmSize": "-1Gi"}}, "spec.engine.shmSize"),
    "ingress host an IP address": (
        {"ingress": {"enabled": True, "host": "192.0.2.1"}},
        "spec.ingress.host",
    ),
}


@pytest.mark.parametrize(("spec", "field"), REFUSED_CHILDREN.values(), ids=list(REFUSED_CHILDREN))
def test_admitted_spec_works_or_stalls_naming_the_field(
    operator: OperatorProcess,
    custom: client.CustomObjectsApi,
    namespace: str,
    spec: dict[str, Any],
    field: str,
) -> None:
    admission: client.ApiException | None = None
    try:
        create_llms(custom, namespace, minimal(**spec))
    except client.ApiException as refused:
        admission = refused
    if admission is not None:
        assert admission.status == 422
        assert field.split("[")[0] in json.loads(admission.body or "{}").get("message", "")
        return
    obj = _wait_invalid_spec(custom, namespace, 60)
    assert condition(obj, "Stalled")["message"].startswith(field)
    assert condition(obj, "Reconciling")["status"] == "False"


KOPF_FINALIZER = "kopf.zalando.org/KopfFinalizerMarker"


def _gone(custom: client.CustomObjectsApi, namespace: str, name: str) -> bool:
    try:
        custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    except client.ApiException as error:
        if error.status == 404:
            return True
        raise
    return False


def test_llmservice_deleted_while_the_operator_is_down_is_gone_at_once(
    operator: OperatorProcess,
    custom: client.CustomObjectsApi,
    apps: client.AppsV1Api,
    namespace: str,
) -> None:
    create_llms(custom, namespace, minimal())
    obj = wait_ready(custom, namespace, "chat")
    assert not obj["metadata"].get("finalizers")
    # Nor any other bookkeeping of the operator's framework on the object.
    annotations = obj["metadata"].get("annotations") or {}
    assert not [key for key in annotations if "kopf" in key or "last-handled" in key]
    operator.stop()
    try:
        custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "chat")
        eventually(lambda: _gone(custom, namespace, "chat"), 5, "the LLMService to be gone")
        eventually(
            lambda: not apps.list_namespaced_deployment(namespace).items,
            90,
            "the children to be garbage collected",
        )
    finally:
        operator.start()


def test_finalizer_left_by_an_older_operator_is_removed(
    operator: OperatorProcess, custom: client.CustomObjectsApi, namespace: str
) -> None:
    operator.stop()
    try:
        for name in ("deleted", "kept"):
            document = minimal(name)
            document["metadata"]["finalizers"] = [KOPF_FINALIZER]
            create_llms(custom, namespace, document)
        custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "deleted")
        terminating = get_llms(custom, namespace, "deleted")
        assert terminating["metadata"].get("deletionTimestamp")
    finally:
        operator.start()
    eventually(lambda: _gone(custom, namespace, "deleted"), 60, "the deleted LLMService gone")
    obj = wait_ready(custom, namespace, "kept")
    assert not obj["metadata"].get("finalizers")
