"""Scaling on the sandbox: the scale subresource, the built-in autoscaler, scale to zero.

Real API server and controllers, real router Pods in front of simulator engines. The
simulator runs fifty times slower than its profile (`--sim-time-scale`), so a request stays
in flight for seconds and the routers' in-flight gauges see the load the test makes.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from llmservice.sandbox import audit
from llmservice.sandbox.cluster import Sandbox
from llmservice.sandbox.product import Product
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
from tests.e2e.operator_fixture import OperatorProcess, free_port, running_operator
from tests.e2e.waiting import eventually, holds_for

pytestmark = pytest.mark.e2e

MODEL = "Qwen/Qwen2.5-0.5B-Instruct"
SLOW_ENGINE = ["--sim-time-scale=50"]  # about 0.4 s per generated token
ROUTER_PORT = 8080
METRICS_PORT = free_port()


@pytest.fixture(scope="module")
def operator(
    sandbox: Sandbox, llmservice_crd: dict[str, Any], product: Product
) -> Iterator[OperatorProcess]:
    args = ["--autoscale-interval", "1", "--metrics-host", "127.0.0.1",
            "--metrics-port", str(METRICS_PORT)]  # fmt: skip
    with running_operator(sandbox, product, "operator-autoscaling.log", args) as process:
        yield process


def scaling_decisions(namespace: str) -> dict[str, float]:
    """llmservice_operator_scaling_decisions_total of `namespace`, by reason."""
    url = f"http://127.0.0.1:{METRICS_PORT}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return {
        sample.labels["reason"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "llmservice_operator_scaling_decisions_total"
        and sample.labels["namespace"] == namespace
    }


def engine_deployment(apps: client.AppsV1Api, namespace: str, name: str) -> Any:
    return apps.read_namespaced_deployment(f"{name}-engine", namespace)


def engine_replicas_become(
    apps: client.AppsV1Api, namespace: str, name: str, replicas: int, timeout: float
) -> None:
    def reached() -> bool:
        return bool(engine_deployment(apps, namespace, name).spec.replicas == replicas)

    eventually(reached, timeout, f"the engine Deployment at {replicas} replicas")


def decision_recorded(
    custom: client.CustomObjectsApi, namespace: str, name: str, reason: str, to: int
) -> dict[str, Any]:
    """The status's last scaling decision, once it is `reason` to `to` replicas: the
    operator writes the status after the Deployment it scaled, so it may lag."""

    def recorded() -> dict[str, Any] | None:
        autoscaling = get_llms(custom, namespace, name)["status"].get("autoscaling") or {}
        last: dict[str, Any] = autoscaling.get("lastDecision") or {}
        return last if (last.get("reason"), last.get("to")) == (reason, to) else None

    return eventually(recorded, 30, f"the status to record {reason} to {to}")


def router_ips(core: client.CoreV1Api, namespace: str, name: str) -> list[str]:
    selector = f"app.kubernetes.io/instance={name},app.kubernetes.io/component=router"
    pods = core.list_namespaced_pod(namespace, label_selector=selector).items
    return [p.status.pod_ip for p in pods if p.status.pod_ip]


def chat(ip: str, max_tokens: int = 8) -> int:
    """One chat completion through the router at `ip`; its HTTP status."""
    body = {"model": MODEL, "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": "Say hello."}]}  # fmt: skip
    request = urllib.request.Request(
        f"http://{ip}:{ROUTER_PORT}/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def scaling_steps(kube: client.ApiClient, namespace: str, name: str) -> list[str]:
    """The reasons of the operator's Normal Events about the LLMService, oldest first."""
    found = (
        client.EventsV1Api(kube)
        .list_namespaced_event(
            namespace, field_selector=f"regarding.name={name},regarding.kind=LLMService"
        )
        .items
    )
    normal = sorted((e for e in found if e.type == "Normal"), key=lambda e: e.event_time)
    return [e.reason for e in normal if e.reason != "Ready"]


def request(
    kube: client.ApiClient,
    method: str,
    path: str,
    headers: dict[str, str],
    query: list[tuple[str, str]] | None = None,
    body: Any = None,
) -> Any:
    """One raw API request; its JSON answer (4xx and 5xx raise)."""
    method, url, all_headers, serialized, post = kube.param_serialize(
        method, path, query_params=query or [], header_params=headers, body=body,
        auth_settings=["BearerToken"],
    )  # fmt: skip
    response = kube.call_api(method, url, all_headers, serialized, post, _request_timeout=30)
    data = response.read()  # type: ignore[no-untyped-call]
    assert 200 <= response.status < 300, (response.status, data)
    return json.loads(data)


def server_side_apply(kube: client.ApiClient, namespace: str, document: dict[str, Any]) -> None:
    """What `kubectl apply --server-side` or a GitOps tool sends, as its own field manager."""
    name = document["metadata"]["name"]
    body = {**document, "metadata": {**document["metadata"], "namespace": namespace}}
    request(
        kube, "PATCH", f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}",
        {"Content-Type": "application/apply-patch+yaml", "Accept": "application/json"},
        [("fieldManager", "gitops"), ("force", "true")], body,
    )  # fmt: skip


def table(kube: client.ApiClient, namespace: str) -> dict[str, str]:
    """`kubectl get llms`: the Replicas column of each LLMService, from the API server."""
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"
    document = request(
        kube, "GET", path, {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}
    )
    columns = [column["name"] for column in document["columnDefinitions"]]
    at = columns.index("Replicas")
    return {row["object"]["metadata"]["name"]: row["cells"][at] for row in document["rows"]}


def test_scale_subresource_drives_the_engine_and_reads_back(
    operator: OperatorProcess,
    kube: client.ApiClient,
    custom: client.CustomObjectsApi,
    apps: client.AppsV1Api,
    namespace: str,
) -> None:
    create_llms(custom, namespace, minimal())
    wait_ready(custom, namespace, "chat")

    # What `kubectl scale llms/chat --replicas=3` sends.
    custom.patch_namespaced_custom_object_scale(
        GROUP, VERSION, namespace, PLURAL, "chat", {"spec": {"replicas": 3}}
    )
    engine_replicas_become(apps, namespace, "chat", 3, READY_TIMEOUT)
    obj = wait_ready(custom, namespace, "chat")
    assert obj["spec"]["engine"]["replicas"] == 3
    assert obj["status"]["replicaSummary"] == "3/3"

    # What `kubectl get --subresource=scale llms/chat` reads.
    scale = custom.get_namespaced_custom_object_scale(GROUP, VERSION, namespace, PLURAL, "chat")
    assert scale["spec"]["replicas"] == 3
    assert scale["status"]["replicas"] == 3
    selector = scale["status"]["selector"]
    deployment = engine_deployment(apps, namespace, "chat")
    assert dict(pair.split("=") for pair in selector.split(",")) == (
        deployment.spec.selector.match_labels
    )
    assert table(kube, namespace) == {"chat": "3/3"}

    # Down to zero, and `kubectl get` says so.
    custom.patch_namespaced_custom_object_scale(
        GROUP, VERSION, namespace, PLURAL, "chat", {"spec": {"replicas": 0}}
    )
    engine_replicas_become(apps, namespace, "chat", 0, READY_TIMEOUT)
    # The old replicas take a moment to stop and leave the Deployment's ready count.
    eventually(lambda: table(kube, namespace) == {"chat": "0/0"}, 60, "`0/0` in kubectl get")
    scale = custom.get_namespaced_custom_object_scale(GROUP, VERSION, namespace, PLURAL, "chat")
    # autoscaling/v1 Scale leaves a zero spec.replicas out.
    assert (scale["spec"].get("replicas", 0), scale["status"]["replicas"]) == (0, 0)


def load(ips: list[str], concurrent: int, stop: threading.Event) -> list[threading.Thread]:
    """`concurrent` clients sending slow requests back to back until `stop` is set."""
    statuses: list[int] = []

    def client_loop(ip: str) -> None:
        while not stop.is_set():
            statuses.append(chat(ip, max_tokens=24))

    threads = [
        threading.Thread(target=client_loop, args=(ips[i % len(ips)],), daemon=True)
        for i in range(concurrent)
    ]
    for thread in threads:
        thread.start()
    return threads


def test_autoscaler_scales_up_under_load_down_after_and_a_reapply_does_not_fight_it(
    operator: OperatorProcess,
    sandbox: Sandbox,
    kube: client.ApiClient,
    custom: client.CustomObjectsApi,
    apps: client.AppsV1Api,
    core: client.CoreV1Api,
    namespace: str,
) -> None:
    autoscaling = {"enabled": True, "minReplicas": 1, "maxReplicas": 3, "targetPerReplica": 1,
                   "scaleDownStabilizationSeconds": 15}  # fmt: skip
    document = minimal(engine={"extraArgs": SLOW_ENGINE, "autoscaling": autoscaling})
    create_llms(custom, namespace, document)
    wait_ready(custom, namespace, "chat")
    ips = eventually(lambda: router_ips(core, namespace, "chat"), 60, "router Pod IPs")
    eventually(lambda: chat(ips[0]) == 200, 60, "a request through the router to succeed")

    stop = threading.Event()
    threads = load(ips, 4, stop)
    try:
        # Four requests in flight against a target of one per replica: the maximum, 3.
        engine_replicas_become(apps, namespace, "chat", 3, 60)
        wait_ready(custom, namespace, "chat")

        decision = decision_recorded(custom, namespace, "chat", "ScaleUp", 3)
        assert decision["metric"] == "InFlightRequests"
        assert decision["value"] >= 2

        # A GitOps tool applies the same spec again: no change, nothing written, no fight.
        start = audit.size(sandbox.dir.audit_log)
        server_side_apply(kube, namespace, document)
        obj = get_llms(custom, namespace, "chat")
        assert obj["spec"]["engine"]["replicas"] == 1  # the autoscaler never writes the spec
        holds_for(
            lambda: engine_deployment(apps, namespace, "chat").spec.replicas == 3,
            8,
            "3 engine replicas under load after the re-apply",
        )
        deployment_writes = [
            r for r in audit.read(sandbox.dir.audit_log, start)
            if r.namespace == namespace and r.resource == "deployments"
            and r.subresource in ("", "scale") and r.is_write
        ]  # fmt: skip
        assert deployment_writes == []
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=120)

    # Idle: after the 15 s down window, back to the minimum (in one step, or two when a
    # scrape lands while the last requests finish). The status follows the Deployment.
    engine_replicas_become(apps, namespace, "chat", 1, 90)
    decision_recorded(custom, namespace, "chat", "ScaleDown", 1)
    obj = wait_ready(custom, namespace, "chat")
    # No flapping: every step up came before every step down.
    steps = scaling_steps(kube, namespace, "chat")
    assert "ScaleUp" in steps
    assert "ScaleDown" in steps
    assert steps == sorted(steps, key=lambda reason: reason == "ScaleDown"), steps
    counted = scaling_decisions(namespace)
    assert counted == {reason: float(steps.count(reason)) for reason in set(steps)}, counted
    assert obj["spec"]["engine"]["replicas"] == 1


def test_idle_service_goes_to_zero_and_a_request_wakes_it(
    operator: OperatorProcess,
    kube: client.ApiClient,
    custom: client.CustomObjectsApi,
    apps: client.AppsV1Api,
    core: client.CoreV1Api,
    namespace: str,
) -> None:
    autoscaling = {"enabled": True, "minReplicas": 0, "maxReplicas": 2,
                   "scaleToZeroAfterIdleSeconds": 10}  # fmt: skip
    create_llms(custom, namespace, minimal(engine={"autoscaling": autoscaling}))
    wait_ready(custom, namespace, "chat")

    # Ten seconds without a request: zero engine replicas, the routers still running.
    engine_replicas_become(apps, namespace, "chat", 0, 60)
    decision = decision_recorded(custom, namespace, "chat", "ScaleToZero", 0)
    assert decision["from"] == 1
    eventually(lambda: table(kube, namespace) == {"chat": "0/0"}, 60, "`0/0` in kubectl get")
    ips = router_ips(core, namespace, "chat")
    assert ips
    # Nobody asks: it stays at zero.
    holds_for(
        lambda: engine_deployment(apps, namespace, "chat").spec.replicas == 0,
        5,
        "zero engine replicas while idle",
    )

    # At zero the routers stay ready (they hold requests), so the LLMService is Ready.
    obj = get_llms(custom, namespace, "chat")
    assert (condition(obj, "Ready")["status"], condition(obj, "Ready")["reason"]) == (
        "True",
        "ScaledToZero",
    )
    # Requests at zero: the routers hold them, the operator sees them queued and wakes the
    # engine, and every one is answered once a replica is ready.
    statuses: list[int] = []
    senders = [threading.Thread(target=lambda ip=ip: statuses.append(chat(ip))) for ip in ips * 3]
    for sender in senders:
        sender.start()
    engine_replicas_become(apps, namespace, "chat", 1, 30)
    for sender in senders:
        sender.join(timeout=180)
    assert statuses == [200] * len(senders)
    obj = wait_ready(custom, namespace, "chat")
    assert condition(obj, "Ready")["reason"] == "Available"
    assert obj["status"]["autoscaling"]["lastDecision"]["reason"] == "WakeUp"
    steps = scaling_steps(kube, namespace, "chat")
    assert steps[-2:] == ["ScaleToZero", "WakeUp"], steps
