"""A real Prometheus on the sandbox, and the GPU exporter it scrapes.

`llmservice sandbox up --with-prometheus` (and the e2e tests) start them beside a running
sandbox; their processes are recorded in the sandbox's state, so `down` stops them too.

On a cluster, Prometheus finds the engine and router through the ServiceMonitors the
operator renders: Prometheus Operator turns each into an `endpoints` discovery of the
Service's ready addresses. The sandbox has no Service endpoints (EndpointSlices refuse
loopback addresses), so Prometheus discovers the Pods themselves through the API server
(`kubernetes_sd_configs` role `pod`) and relabels each target to what the ServiceMonitor
would have given it:

====================================  =============================================  =========
ServiceMonitor target label           from the Pod here                               example
====================================  =============================================  =========
(ready addresses of the Service)      Pods with the component's labels, Ready, port  `http`
                                      named as the ServiceMonitor's endpoint
`namespace`, `pod`, `container`       the Pod's namespace, name and container name
`service`, `job`                      the Service's name: `<instance>-engine` for    `chat`
                                      engines, `<instance>` for routers
`endpoint`                            the port name                                   `http`
`app_kubernetes_io_instance`          the Pod's label (targetLabels copies the
                                      Service's, which has the same value)
`instance`                            Pod IP and port
====================================  =============================================  =========

The operator's Pod is found the same way (label `app.kubernetes.io/name:
llmservice-operator`, port `metrics`), with `honor_labels` as deploy/monitoring/ sets it.
The GPU exporter (see `gpu_exporter`) is a static target with `honor_labels`, as the GPU
Operator's ServiceMonitor for dcgm-exporter keeps the exporter's `namespace` and `pod`.
Prometheus authenticates to the API server with the sandbox's admin client certificate.
"""

from __future__ import annotations

import copy
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from llmservice.sandbox import health
from llmservice.sandbox.cluster import Sandbox
from llmservice.sandbox.errors import SandboxError
from llmservice.sandbox.pki import Pki
from llmservice.sandbox.ports import free_port
from llmservice.sandbox.processes import ProcessRecord, start, stop
from llmservice.sandbox.progress import Progress

HOST = "127.0.0.1"
SCRAPE_INTERVAL = "5s"  # short, so a test sees fresh samples within seconds
READY_TIMEOUT = 60.0
PROMETHEUS = "prometheus"
GPU_EXPORTER = "gpu-exporter"
GPU_EXPORTER_MODULE = "llmservice.sandbox.gpu_exporter"
MANAGED_BY = "llmservice-operator"


@dataclass(frozen=True)
class PrometheusEndpoints:
    url: str
    gpu_exporter_url: str


def _pod_discovery(sandbox: Sandbox, ca: Path, cert: Path, key: Path) -> list[dict[str, Any]]:
    state = sandbox.load()
    assert state is not None  # noqa: S101 - checked by the caller
    return [
        {
            "role": "pod",
            "api_server": state.ports.apiserver_url,
            "tls_config": {"ca_file": str(ca), "cert_file": str(cert), "key_file": str(key)},
        }
    ]


def _label(name: str) -> str:
    """The discovery label of a Pod label: every character not allowed in names becomes _."""
    return "__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", name)


def _common_relabelling(port: str) -> list[dict[str, Any]]:
    """Ready Pods, the named port, and the labels every ServiceMonitor target gets."""
    return [
        {"source_labels": ["__meta_kubernetes_pod_ready"], "regex": "true", "action": "keep"},
        {"source_labels": ["__meta_kubernetes_pod_container_port_name"], "regex": port,
         "action": "keep"},
        {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
        {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
        {"source_labels": ["__meta_kubernetes_pod_container_name"], "target_label": "container"},
        {"target_label": "endpoint", "replacement": port},
    ]  # fmt: skip


def scrape_configs(discovery: list[dict[str, Any]], exporter: str) -> list[dict[str, Any]]:
    """The jobs: engines and routers as their ServiceMonitors, the operator, the GPUs."""
    instance = _label("app.kubernetes.io/instance")
    component = _label("app.kubernetes.io/component")
    llmservice = {
        "job_name": "llmservice",
        "kubernetes_sd_configs": copy.deepcopy(discovery),
        "relabel_configs": [
            {"source_labels": [_label("app.kubernetes.io/managed-by"), component],
             "regex": f"{MANAGED_BY};(engine|router)", "action": "keep"},
            *_common_relabelling("http"),
            # The Service's name, as `service` and `job`: <instance>-engine or <instance>.
            {"source_labels": [instance, component], "regex": "(.+);engine",
             "target_label": "service", "replacement": "$1-engine"},
            {"source_labels": [instance, component], "regex": "(.+);router",
             "target_label": "service", "replacement": "$1"},
            {"source_labels": ["service"], "target_label": "job"},
            {"source_labels": [instance], "target_label": "app_kubernetes_io_instance"},
        ],
    }  # fmt: skip
    operator = {
        "job_name": "llmservice-operator",
        "honor_labels": True,
        "kubernetes_sd_configs": copy.deepcopy(discovery),
        "relabel_configs": [
            {"source_labels": [_label("app.kubernetes.io/name")],
             "regex": "llmservice-operator", "action": "keep"},
            *_common_relabelling("metrics"),
            {"target_label": "service", "replacement": "llmservice-operator-metrics"},
            {"target_label": "job", "replacement": "llmservice-operator-metrics"},
        ],
    }  # fmt: skip
    gpus = {
        "job_name": "nvidia-dcgm-exporter",
        "honor_labels": True,
        "static_configs": [{"targets": [exporter]}],
    }
    return [llmservice, operator, gpus]


def config(sandbox: Sandbox, exporter: str) -> dict[str, Any]:
    keys = Pki(sandbox.dir.pki)
    discovery = _pod_discovery(sandbox, keys.ca_cert, keys.admin_cert, keys.admin_key)
    return {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "scrape_configs": scrape_configs(discovery, exporter),
    }


def _endpoints_file(sandbox: Sandbox) -> Path:
    return sandbox.dir.root / "prometheus.json"


def running(sandbox: Sandbox) -> PrometheusEndpoints | None:
    """The endpoints of this sandbox's Prometheus, when it runs."""
    state = sandbox.load()
    process = state.process(PROMETHEUS) if state else None
    if process is None or not process.alive():
        return None
    try:
        data = json.loads(_endpoints_file(sandbox).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return PrometheusEndpoints(data["url"], data["gpu_exporter_url"])


def _launch(sandbox: Sandbox, name: str, argv: list[str]) -> ProcessRecord:
    state = sandbox.load()
    if state is None:
        raise SandboxError("no sandbox is running", "start one with `llmservice sandbox up`")
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    record = start(name, argv, sandbox.dir.log(name), env=env)
    state.record(record, sandbox.dir.state)
    return record


def start_prometheus(sandbox: Sandbox, progress: Progress) -> PrometheusEndpoints:
    """Start the GPU exporter and Prometheus (once), and wait until Prometheus is ready."""
    existing = running(sandbox)
    if existing is not None:
        return existing
    binary = sandbox.binaries.binary(PROMETHEUS)
    if not binary.is_file():
        raise SandboxError(f"{binary} is missing", "run `llmservice sandbox build`")
    exporter_port, port = free_port(), free_port()
    endpoints = PrometheusEndpoints(
        f"http://{HOST}:{port}", f"http://{HOST}:{exporter_port}/metrics"
    )
    with progress.step(
        f"starting the GPU exporter and Prometheus {sandbox.binaries.prometheus_version}"
    ):
        exporter = _launch(sandbox, GPU_EXPORTER, [
            sys.executable, "-m", GPU_EXPORTER_MODULE,
            "--kubeconfig", str(sandbox.kubeconfig),
            "--host", HOST, "--port", str(exporter_port),
            "--gpus-per-node", str(sandbox.settings.gpus_per_node),
        ])  # fmt: skip
        health.wait_until(
            lambda: health.http_ok(endpoints.gpu_exporter_url),
            timeout=READY_TIMEOUT,
            what="the GPU exporter",
            watch=exporter,
        )
        config_file = sandbox.dir.config / "prometheus.yml"
        config_file.parent.mkdir(parents=True, exist_ok=True)
        document = config(sandbox, f"{HOST}:{exporter_port}")
        config_file.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
        server = _launch(sandbox, PROMETHEUS, [
            str(binary),
            f"--config.file={config_file}",
            f"--storage.tsdb.path={sandbox.dir.root / 'prometheus'}",
            f"--web.listen-address={HOST}:{port}",
            "--log.level=warn",
        ])  # fmt: skip
        health.wait_until(
            lambda: health.http_ok(f"{endpoints.url}/-/ready"),
            timeout=READY_TIMEOUT,
            what="Prometheus /-/ready",
            watch=server,
        )
    _endpoints_file(sandbox).write_text(
        json.dumps({"url": endpoints.url, "gpu_exporter_url": endpoints.gpu_exporter_url}),
        encoding="utf-8",
    )
    return endpoints


def stop_prometheus(sandbox: Sandbox) -> None:
    """Stop Prometheus and the GPU exporter (the rest of the sandbox keeps running)."""
    state = sandbox.load()
    if state is None:
        return
    for name in (PROMETHEUS, GPU_EXPORTER):
        process = state.process(name)
        if process is not None:
            stop(process)
            state.processes.remove(process)
    state.save(sandbox.dir.state)
    _endpoints_file(sandbox).unlink(missing_ok=True)
