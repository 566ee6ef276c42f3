"""The sandbox's Prometheus: its build's version mapping, its scrape jobs, the GPU exporter."""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

from llmservice.sandbox.gpu_exporter import assign, memory_fraction
from llmservice.sandbox.prometheus import scrape_configs
from llmservice.sandbox.versions import prometheus_module_version


def test_prometheus_releases_map_to_their_go_module_versions() -> None:
    assert prometheus_module_version("v3.16.0") == "v0.316.0"
    assert prometheus_module_version("v3.5.2") == "v0.305.2"


def relabel(rules: list[dict[str, Any]], labels: dict[str, str]) -> dict[str, str] | None:
    """Prometheus's relabelling (keep and replace only, anchored regexes), for the tests."""
    current = dict(labels)
    for rule in rules:
        value = ";".join(current.get(s, "") for s in rule.get("source_labels", []))
        match = re.fullmatch(rule.get("regex", "(.*)"), value)
        if rule.get("action") == "keep":
            if match is None:
                return None
            continue
        if match is not None:
            current[rule["target_label"]] = match.expand(
                rule.get("replacement", "$1").replace("$1", r"\g<1>")
            )
    return {k: v for k, v in current.items() if not k.startswith("__")}


def pod(component: str, name: str, port: str = "http", ready: str = "true") -> dict[str, str]:
    labels = {
        "__meta_kubernetes_namespace": "team-a",
        "__meta_kubernetes_pod_name": name,
        "__meta_kubernetes_pod_container_name": "vllm" if component == "engine" else component,
        "__meta_kubernetes_pod_container_port_name": port,
        "__meta_kubernetes_pod_ready": ready,
        "__meta_kubernetes_pod_label_app_kubernetes_io_component": component,
        "__meta_kubernetes_pod_label_app_kubernetes_io_instance": "chat",
    }
    if component in ("engine", "router"):
        labels["__meta_kubernetes_pod_label_app_kubernetes_io_managed_by"] = "llmservice-operator"
    else:
        labels["__meta_kubernetes_pod_label_app_kubernetes_io_name"] = "llmservice-operator"
    return labels


def test_engine_and_router_targets_get_the_service_monitor_labels() -> None:
    jobs = {job["job_name"]: job for job in scrape_configs([], "127.0.0.1:9400")}
    rules = jobs["llmservice"]["relabel_configs"]
    engine = relabel(rules, pod("engine", "chat-engine-abc-12345"))
    assert engine == {
        "namespace": "team-a", "pod": "chat-engine-abc-12345", "container": "vllm",
        "endpoint": "http", "service": "chat-engine", "job": "chat-engine",
        "app_kubernetes_io_instance": "chat",
    }  # fmt: skip
    router = relabel(rules, pod("router", "chat-router-abc-12345"))
    assert router is not None
    assert (router["service"], router["job"]) == ("chat", "chat")
    # Not ready (no Service endpoint), another port, or not ours: not scraped.
    assert relabel(rules, pod("engine", "x", ready="false")) is None
    assert relabel(rules, pod("engine", "x", port="grpc")) is None
    assert relabel(rules, pod("operator", "x")) is None


def test_operator_and_gpu_jobs_keep_the_exporters_labels() -> None:
    jobs = {job["job_name"]: job for job in scrape_configs([], "127.0.0.1:9400")}
    operator = jobs["llmservice-operator"]
    assert operator["honor_labels"] is True
    labels = relabel(operator["relabel_configs"], pod("operator", "op-1", port="metrics"))
    assert labels is not None
    assert labels["job"] == "llmservice-operator-metrics"
    assert relabel(operator["relabel_configs"], pod("operator", "op-1", port="healthz")) is None
    gpus = jobs["nvidia-dcgm-exporter"]
    assert gpus["honor_labels"] is True
    assert gpus["static_configs"] == [{"targets": ["127.0.0.1:9400"]}]


def fake_pod(name: str, node: str, gpus: int, args: list[str] | None = None) -> Any:
    container = SimpleNamespace(
        name="vllm",
        args=args or [],
        resources=SimpleNamespace(limits={"nvidia.com/gpu": str(gpus)} if gpus else {}),
        ports=[],
    )
    return SimpleNamespace(
        metadata=SimpleNamespace(namespace="team-a", name=name, uid=name, deletion_timestamp=None),
        spec=SimpleNamespace(node_name=node, containers=[container]),
        status=SimpleNamespace(pod_ip=None),
    )


def test_gpus_go_to_the_pods_on_their_node_in_order() -> None:
    pods = [
        fake_pod("b-engine", "node-0", 2),
        fake_pod("a-engine", "node-0", 1),
        fake_pod("router", "node-0", 0),
        fake_pod("c-engine", "node-1", 1),
    ]
    gpus = assign(pods, ["node-0", "node-1"], 4)
    assert len(gpus) == 8
    held = [(g.node, g.index, g.pod.metadata.name if g.pod else None) for g in gpus]
    assert held == [
        ("node-0", 0, "a-engine"), ("node-0", 1, "b-engine"), ("node-0", 2, "b-engine"),
        ("node-0", 3, None), ("node-1", 0, "c-engine"), ("node-1", 1, None),
        ("node-1", 2, None), ("node-1", 3, None),
    ]  # fmt: skip
    labels = gpus[0].labels()
    assert labels[-2:] == ["team-a", "a-engine"]
    assert gpus[3].labels()[-3:] == ["", "", ""]


def test_memory_follows_the_engines_gpu_memory_utilization() -> None:
    assert memory_fraction(fake_pod("e", "n", 1, ["--gpu-memory-utilization=0.8"])) == 0.8
    assert memory_fraction(fake_pod("e", "n", 1, ["--gpu-memory-utilization", "0.7"])) == 0.7
    assert memory_fraction(fake_pod("e", "n", 1, [])) == 0.9
