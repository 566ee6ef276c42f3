"""A real Prometheus on the sandbox: the dashboard and the alerts run against live series.

The module installs deploy/ (the operator runs as its Pod, serving its metrics on the Pod
IP), starts Prometheus and the GPU exporter (`sandbox.prometheus`, as
`sandbox up --with-prometheus` does), applies examples/minimal.yaml with tight admission
limits and sends traffic through its router, then a burst that queues and gets 429s. Then
every query of deploy/grafana/llmservice.json, with the dashboard's variables filled in,
must parse and return data, and every alert expression of the LLMService's PrometheusRule
must parse, stay silent on a healthy stack, and (for those whose series the sandbox has)
measure something once its threshold is taken off.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from llmservice.api.validation import parse_llmservice
from llmservice.render import render_all
from llmservice.sandbox import stack
from llmservice.sandbox.apiclient import found
from llmservice.sandbox.cluster import Sandbox
from llmservice.sandbox.progress import Progress
from llmservice.sandbox.prometheus import PrometheusEndpoints, start_prometheus, stop_prometheus
from llmservice.sandbox.runtime.records import PodProcess, load_all
from tests.e2e.probes import answers
from tests.e2e.waiting import eventually

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "llmservice.json"
CRD = "llmservices.serving.llmservice.dev"
OPERATOR_NAMESPACE = "llmservice-system"
NAME = stack.EXAMPLE_NAME
METRICS_PORT = 8080  # deploy/operator.yaml's `metrics` port
# Wide enough to hold the traffic sent before the queries run.
RATE_INTERVAL = "5m"
DATA_TIMEOUT = 120.0
# Alerts whose inputs a healthy sandbox produces: without their threshold they return data.
MEASURED = (
    "LLMServiceTimeToFirstTokenHigh",
    "LLMServiceEngineQueueHigh",
    "LLMServiceKVCacheSaturated",
    "LLMServicePreemptions",
    "LLMServiceEngineReplicasUnavailable",
    "LLMServiceReplicaNotRoutable",
    "LLMServiceGPUMemoryNearFull",
)
THRESHOLD = re.compile(r"\s*(>|==)\s*[0-9.]+$")


def kubectl(sandbox: Sandbox, *args: str) -> str:
    result = subprocess.run(
        ["kubectl", "--kubeconfig", str(sandbox.kubeconfig), *args],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
    return result.stdout


def crd_gone(kube: client.ApiClient) -> bool:
    extensions = client.ApiextensionsV1Api(kube)
    return not found(lambda: extensions.read_custom_resource_definition(CRD))


@pytest.fixture(scope="module")
def operator_pod(sandbox: Sandbox, kube: client.ApiClient) -> Iterator[PodProcess]:
    """deploy/ applied and its operator Pod's process live; deploy/ removed afterwards."""
    eventually(lambda: crd_gone(kube), timeout=60, what=f"CRD {CRD} from earlier tests to go")
    kubectl(sandbox, "apply", "-k", str(DEPLOY))

    def live() -> PodProcess | None:
        pod = stack.operator_process(sandbox)
        return pod if pod and answers(f"http://{pod.ip}:{pod.port}/healthz") else None

    yield eventually(live, timeout=90, what="the operator Pod's /healthz")
    kubectl(sandbox, "delete", "llmservices", "--all", "--all-namespaces", "--timeout=60s")
    kubectl(sandbox, "delete", "-k", str(DEPLOY), "--wait=false")
    eventually(lambda: crd_gone(kube), timeout=60, what=f"CRD {CRD} to be deleted")
    core = client.CoreV1Api(kube)
    eventually(
        lambda: not found(lambda: core.read_namespace(OPERATOR_NAMESPACE)),
        timeout=120,
        what=f"namespace {OPERATOR_NAMESPACE} to go",
    )


@pytest.fixture(scope="module")
def prometheus(sandbox: Sandbox, operator_pod: PodProcess) -> Iterator[PrometheusEndpoints]:
    endpoints = start_prometheus(sandbox, Progress(quiet=True))
    yield endpoints
    stop_prometheus(sandbox)


def example_with_tight_admission(directory: Path) -> Path:
    """examples/minimal.yaml with one slot per engine replica, a one-request queue and a
    throughput gate that never closes: a burst both waits and gets 429s, and every
    admission panel has series to show."""
    document = yaml.safe_load(stack.EXAMPLE.read_text())
    router = document["spec"].setdefault("router", {})
    router["admission"] = {
        "maxInFlightPerReplica": 1,
        "maxQueued": 1,
        "minTokensPerSecondPerRequest": 0.001,
    }
    path = directory / "minimal-admission.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


async def burst(url: str, model: str, count: int) -> list[int]:
    """`count` chat completions sent at once; their status codes."""
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 32}
    async with httpx.AsyncClient(timeout=60) as http:
        answers = await asyncio.gather(
            *(http.post(f"{url}/v1/chat/completions", json=body) for _ in range(count))
        )
    return [answer.status_code for answer in answers]


@pytest.fixture(scope="module")
def served(
    sandbox: Sandbox,
    kube: client.ApiClient,
    prometheus: PrometheusEndpoints,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """The example LLMService, Ready, after traffic through its router; its namespace."""
    core = client.CoreV1Api(kube)
    namespace = f"e2e-prom-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    progress = Progress(quiet=True)
    example = example_with_tight_admission(tmp_path_factory.mktemp("prometheus"))
    stack.apply_example(sandbox, progress, example, namespace=namespace)
    stack.send_traffic_and_show_throughput(sandbox, progress, namespace=namespace)
    # One malformed request: the router's errors panel shows data only once one happened.
    router = next(
        p for p in load_all(sandbox.dir.runtime).values()
        if p.namespace == namespace and p.component == "router" and p.process.alive()
    )  # fmt: skip
    response = httpx.post(
        f"http://{router.ip}:{router.port}/v1/chat/completions", content=b"{not json", timeout=10
    )
    assert response.status_code == 400
    # A burst on one slot: one is served at once, one waits in the queue, the rest get 429.
    model = httpx.get(f"http://{router.ip}:{router.port}/v1/models", timeout=10).json()
    statuses = asyncio.run(burst(f"http://{router.ip}:{router.port}", model["data"][0]["id"], 8))
    assert statuses.count(200) >= 2, statuses
    assert 429 in statuses, statuses
    yield namespace
    core.delete_namespace(namespace)


def query(prometheus: PrometheusEndpoints, expr: str) -> dict[str, Any]:
    """The query API's answer; raises with Prometheus's error when the query is refused."""
    response = httpx.get(f"{prometheus.url}/api/v1/query", params={"query": expr}, timeout=30)
    answer: dict[str, Any] = response.json()
    assert answer.get("status") == "success", f"{expr}: {answer.get('error')}"
    return answer


def has_data(answer: dict[str, Any]) -> bool:
    """At least one sample that is a number (a rate over no increase is NaN)."""
    results = answer["data"]["result"]
    return any(not math.isnan(float(r["value"][1])) for r in results)


def panel_queries(namespace: str) -> list[tuple[str, str]]:
    document = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    filled = []
    for panel in document["panels"]:
        for target in panel.get("targets", []):
            expr = (
                target["expr"]
                .replace("$__rate_interval", RATE_INTERVAL)
                .replace("$namespace", namespace)
                .replace("$llmservice", NAME)
            )
            assert "$" not in expr, f"a dashboard variable the test does not fill: {expr}"
            filled.append((panel["title"], expr))
    return filled


def alert_rules(kube: client.ApiClient, namespace: str) -> dict[str, str]:
    """The alerts the operator renders for the live LLMService: name -> expression."""
    custom = client.CustomObjectsApi(kube)
    live: Any = custom.get_namespaced_custom_object(
        stack.GROUP, stack.VERSION, namespace, stack.PLURAL, NAME
    )
    document = {k: live[k] for k in ("apiVersion", "kind", "metadata", "spec")}
    (rule,) = [o for o in render_all(parse_llmservice(document)) if o["kind"] == "PrometheusRule"]
    return {r["alert"]: r["expr"] for r in rule["spec"]["groups"][0]["rules"]}


def test_operator_serves_its_metrics_on_its_pod(served: str, operator_pod: PodProcess) -> None:
    text = httpx.get(f"http://{operator_pod.ip}:{METRICS_PORT}/metrics", timeout=10).text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }

    def value(name: str, **labels: str) -> float | None:
        return samples.get((name, tuple(sorted(labels.items()))))

    assert (value("llmservice_operator_reconciles_total", result="success") or 0) > 0
    assert (value("llmservice_operator_reconcile_duration_seconds_count") or 0) > 0
    assert (value("llmservice_operator_scrapes_total", namespace=served, llmservice=NAME) or 0) > 0
    ready = {"namespace": served, "llmservice": NAME, "type": "Ready", "status": "True"}
    assert value("llmservice_operator_llmservice_condition", **ready, reason="Available") == 1
    replicas = "llmservice_operator_engine_replicas"
    assert value(replicas, namespace=served, llmservice=NAME, state="desired") == 1
    assert value(replicas, namespace=served, llmservice=NAME, state="ready") == 1
    assert (value("llmservice_operator_llmservices", type="Ready", status="True") or 0) >= 1


def test_prometheus_finds_every_target_with_the_service_monitor_labels(
    served: str, prometheus: PrometheusEndpoints
) -> None:
    def targets() -> list[dict[str, Any]] | None:
        answer = httpx.get(f"{prometheus.url}/api/v1/targets", timeout=10).json()
        active: list[dict[str, Any]] = answer["data"]["activeTargets"]
        ours = [t for t in active if t["labels"].get("namespace") in (served, OPERATOR_NAMESPACE)]
        jobs = {t["labels"]["job"] for t in ours}
        wanted = {f"{NAME}-engine", NAME, "llmservice-operator-metrics"}
        up = all(t["health"] == "up" for t in ours)
        return ours if wanted <= jobs and up else None

    found_targets = eventually(targets, timeout=DATA_TIMEOUT, what="every target up")
    for target in found_targets:
        labels = target["labels"]
        assert {"namespace", "pod", "container", "endpoint", "service", "job"} <= labels.keys()
        if labels["namespace"] == served:
            assert labels["app_kubernetes_io_instance"] == NAME
            assert labels["endpoint"] == "http"
            assert labels["service"] == labels["job"]
    engines = [t for t in found_targets if t["labels"]["job"] == f"{NAME}-engine"]
    assert len(engines) == 1
    assert engines[0]["labels"]["pod"].startswith(f"{NAME}-engine-")
    assert len([t for t in found_targets if t["labels"]["job"] == NAME]) == 2  # two routers


def test_every_dashboard_panel_returns_data(served: str, prometheus: PrometheusEndpoints) -> None:
    queries = panel_queries(served)
    # Every query parses, whatever the data.
    for _title, expr in queries:
        query(prometheus, expr)
    panels = sorted({title for title, _ in queries})

    def empty_panels() -> list[str]:
        with_data = {title for title, expr in queries if has_data(query(prometheus, expr))}
        return [title for title in panels if title not in with_data]

    started = time.monotonic()
    missing = empty_panels()
    while missing and time.monotonic() - started < DATA_TIMEOUT:
        time.sleep(2)
        missing = empty_panels()
    assert not missing, f"panels without data: {missing}"


def test_every_alert_expression_runs_and_is_silent_on_a_healthy_stack(
    served: str, kube: client.ApiClient, prometheus: PrometheusEndpoints
) -> None:
    rules = alert_rules(kube, served)
    assert set(MEASURED) <= set(rules)
    for name, expr in rules.items():
        answer = query(prometheus, expr)
        assert answer["data"]["result"] == [], f"{name} fires on a healthy stack: {answer}"

    def unmeasured() -> list[str]:
        return [
            name for name in MEASURED
            if not has_data(query(prometheus, THRESHOLD.sub("", rules[name])))
        ]  # fmt: skip

    started = time.monotonic()
    missing = unmeasured()
    while missing and time.monotonic() - started < DATA_TIMEOUT:
        time.sleep(2)
        missing = unmeasured()
    assert not missing, f"alert expressions without data once the threshold is off: {missing}"
    # A GPU of the engine Pod, as the exporter reports it: vLLM's share of its memory.
    gpu = THRESHOLD.sub("", rules["LLMServiceGPUMemoryNearFull"])
    (series,) = query(prometheus, gpu)["data"]["result"]
    assert series["metric"]["pod"].startswith(f"{NAME}-engine-")
    assert float(series["value"][1]) == pytest.approx(0.9, abs=0.01)
