"""The Grafana dashboard asks only for series that exist.

Metric and label names are taken from what the simulator (same names as vLLM) and the
router really expose, plus the labels Prometheus adds to every target scraped through the
operator's ServiceMonitors; a renamed metric or label fails here, not on a blank panel.
The GPU panels read the NVIDIA DCGM exporter's series, with the labels the sandbox's GPU
exporter gives them (those of dcgm-exporter under the GPU Operator).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from llmservice.api.validation import parse_llmservice
from llmservice.render import render_all
from llmservice.router.admission import AdmissionMetrics
from llmservice.router.balancer import LeastLoadBalancer
from llmservice.router.config import PeerConfig
from llmservice.router.metrics import RouterMetrics
from llmservice.router.peers import PeerSync
from llmservice.router.sticky import StickyBalancer
from llmservice.sandbox.gpu_exporter import LABELS as GPU_LABELS
from llmservice.sim.config import SimConfig
from llmservice.sim.metrics import SimMetrics, render_metrics

REPO = Path(__file__).resolve().parents[3]
DASHBOARD = REPO / "deploy" / "grafana" / "llmservice.json"
INSTANCE_LABEL = "app.kubernetes.io/instance"
# Added by Prometheus to every scraped series (namespace, pod) or by the ServiceMonitor's
# targetLabels (the LLMService's name); `le` is every histogram's bucket label.
TARGET_LABELS = {"namespace", "pod", "app_kubernetes_io_instance", "le"}
OUR_METRIC = re.compile(r"(vllm:[a-z0-9_:]+|llmservice_router_[a-z0-9_]+)")
GPU_METRIC = re.compile(r"(DCGM_FI_[A-Z0-9_]+)")
SAMPLE = re.compile(r"^([^\s{#]+)(?:\{([^}]*)\})?\s")


def exposition() -> str:
    """Both processes' /metrics text, with one observation of each labelled family."""
    registry = CollectorRegistry()
    router = RouterMetrics(registry, lambda: {"127.0.0.1:8000": 1})
    router.observe_request("/v1/chat/completions", 200, "m", 0.1, 0.05)
    router.error("upstream")
    router.retry("connect")
    router.routed("header", True)
    router.add_tokens(1, 2)
    router.set_replicas(1, 0)
    router.placement_shared = lambda: False
    peers = PeerSync(
        StickyBalancer(fallback=LeastLoadBalancer()), PeerConfig(port=8082), None, registry
    )
    peers.placements.labels("sent").inc()
    peers.peer_count.set(1)
    admission = AdmissionMetrics(registry)
    admission.reject("queue_full", "team-a")
    admission.waited("team-a", 0.2)
    admission.add_tokens("team-a", 1, 2)
    admission.queued = lambda: [("team-a", 3)]
    admission.limits = lambda: [("127.0.0.1:8000", 4)]
    admission.closed = lambda: [("127.0.0.1:8000", 1)]
    engine = SimMetrics(SimConfig())
    return generate_latest(registry).decode() + render_metrics(engine).decode()


def exposed() -> dict[str, set[str]]:
    """Every sample name exposed, with the labels it carries."""
    series: dict[str, set[str]] = {}
    for line in exposition().splitlines():
        match = SAMPLE.match(line)
        if match is None:
            continue
        labels = set(re.findall(r'(\w+)="', match.group(2) or ""))
        series.setdefault(match.group(1), set()).update(labels)
    for name in ("DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE",
                 "DCGM_FI_DEV_GPU_TEMP"):  # fmt: skip
        series[name] = set(GPU_LABELS)
    return series


def dashboard() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return document


def targets() -> list[dict[str, Any]]:
    return [t for p in dashboard()["panels"] for t in p.get("targets", [])]


def test_panels_are_well_formed() -> None:
    document = dashboard()
    panels = document["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in document["templating"]["list"]}
    assert variables == {"datasource", "namespace", "llmservice"}
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        assert panel["gridPos"]["w"] + panel["gridPos"]["x"] <= 24


@pytest.mark.parametrize("target", targets(), ids=lambda t: t["expr"][:60])
def test_every_query_names_exposed_series_and_labels(target: dict[str, Any]) -> None:
    expr = target["expr"]
    assert expr.count("(") == expr.count(")")
    assert expr.count("{") == expr.count("}")
    series = exposed()
    names = OUR_METRIC.findall(expr)
    assert names, expr
    gpu_names = GPU_METRIC.findall(expr)
    labels = set(TARGET_LABELS)
    for name in names + gpu_names:
        assert name in series, f"{name} is not exposed (a renamed metric?)"
        labels |= series[name]
    grouped = {
        label.strip()
        for clause in re.findall(r"\b(?:by|ignoring|on)\s*\(([^)]*)\)", expr)
        for label in clause.split(",")
        if label.strip()
    }
    legend = set(re.findall(r"\{\{(\w+)\}\}", target["legendFormat"]))
    assert grouped | legend <= labels, f"unknown labels in {expr!r}"
    # Every query is scoped to the chosen namespace and LLMService(s); GPU series to the
    # namespace, and to the LLMService(s) by the join with their engine Pods' series.
    for name in names:
        assert re.search(re.escape(name) + r'\{namespace="\$namespace", ', expr), expr
    for name in gpu_names:
        assert re.search(re.escape(name) + r'\{namespace="\$namespace"\}', expr), expr
    if gpu_names:
        assert "* on (namespace, pod) group_left () group by (namespace, pod) (vllm:" in expr


def test_the_service_monitors_add_the_label_the_dashboard_selects_on() -> None:
    document = {
        "apiVersion": "serving.llmservice.dev/v1alpha1",
        "kind": "LLMService",
        "metadata": {"name": "chat", "namespace": "default"},
        "spec": {"model": {"name": "Qwen/Qwen2.5-0.5B-Instruct"}},
    }
    rendered = render_all(parse_llmservice(document))
    monitors = [o for o in rendered if o["kind"] == "ServiceMonitor"]
    services = {o["metadata"]["name"]: o for o in rendered if o["kind"] == "Service"}
    assert len(monitors) == 2
    for monitor in monitors:
        assert INSTANCE_LABEL in monitor["spec"]["targetLabels"]
        selected = monitor["spec"]["selector"]["matchLabels"]
        matching = [
            s for s in services.values() if selected.items() <= s["metadata"]["labels"].items()
        ]
        assert matching, monitor["metadata"]["name"]
        for service in matching:
            # Prometheus turns the Service's label into app_kubernetes_io_instance="chat".
            assert service["metadata"]["labels"][INSTANCE_LABEL] == "chat"
