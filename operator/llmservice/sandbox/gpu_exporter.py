"""The NVIDIA DCGM exporter's GPU series for the sandbox's fake GPUs.

On a real cluster the GPU Operator runs dcgm-exporter on every GPU node; with its Pod
mapping on (the GPU Operator's default) each GPU's series carry the `namespace`, `pod` and
`container` of the Pod that holds the GPU. The sandbox's kwok nodes have no GPUs, so this
small exporter serves the same series names and labels for them:

- each node has `--gpus-per-node` GPUs, numbered from 0; the Pods bound to a node that ask
  for `nvidia.com/gpu` take that many, in order of name (a kubelet's device plugin would
  choose, the numbers only need to be stable);
- a GPU held by an engine Pod uses `engine.gpuMemoryUtilization` of its memory (vLLM takes
  it at start, read from the Pod's `--gpu-memory-utilization` arg), is busy in proportion
  to the requests the engine runs (read from its `/metrics`), and warms with use;
- a free GPU is idle, cool and empty, and has no Pod labels.

It runs on the sandbox's own interpreter (like the runtime), not as a product command:
`python -m llmservice.sandbox.gpu_exporter --kubeconfig K --host H --port P`.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
from kubernetes import client, config
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from llmservice.sandbox.layout import GPU_RESOURCE

MODEL_NAME = "NVIDIA H100 80GB HBM3"
MEMORY_MIB = 81559  # what dcgm-exporter reports for an H100 80GB (FB_USED + FB_FREE)
DRIVER_MIB = 520  # the driver's own reservation on every GPU
IDLE_CELSIUS = 32.0
BUSY_CELSIUS = 40.0  # added at 100% utilization
DEFAULT_MEMORY_UTILIZATION = 0.9  # vLLM's default --gpu-memory-utilization
SCRAPE_TIMEOUT_SECONDS = 1.0
LABELS = ["gpu", "UUID", "device", "modelName", "Hostname", "container", "namespace", "pod"]


@dataclass(frozen=True)
class Gpu:
    node: str
    index: int
    pod: Any | None = None  # the V1Pod holding it

    def labels(self) -> list[str]:
        namespace = pod = container = ""
        if self.pod is not None:
            namespace = self.pod.metadata.namespace
            pod = self.pod.metadata.name
            container = self.pod.spec.containers[0].name
        uuid = f"GPU-{self.node}-{self.index:02d}"
        return [
            str(self.index), uuid, f"nvidia{self.index}", MODEL_NAME, self.node,
            container, namespace, pod,
        ]  # fmt: skip


def gpus_of(pod: Any) -> int:
    total = 0
    for container in pod.spec.containers or []:
        limits = (container.resources.limits if container.resources else None) or {}
        total += int(limits.get(GPU_RESOURCE, 0) or 0)
    return total


def assign(pods: list[Any], nodes: list[str], gpus_per_node: int) -> list[Gpu]:
    """Every GPU of every node, with the Pod holding it (if any)."""
    holders: dict[str, list[Any]] = {node: [] for node in nodes}
    for pod in sorted(pods, key=lambda p: (p.metadata.namespace, p.metadata.name)):
        node = pod.spec.node_name
        if node in holders and not pod.metadata.deletion_timestamp and gpus_of(pod) > 0:
            holders[node].extend([pod] * gpus_of(pod))
    return [
        Gpu(node, index, holders[node][index] if index < len(holders[node]) else None)
        for node in nodes
        for index in range(gpus_per_node)
    ]


def memory_fraction(pod: Any) -> float:
    """`--gpu-memory-utilization` from the engine's args, in either spelling."""
    args = list(pod.spec.containers[0].args or [])
    for position, arg in enumerate(args):
        if arg.startswith("--gpu-memory-utilization="):
            return float(arg.split("=", 1)[1])
        if arg == "--gpu-memory-utilization" and position + 1 < len(args):
            return float(args[position + 1])
    return DEFAULT_MEMORY_UTILIZATION


def engine_load(http: httpx.Client, pod: Any) -> float:
    """Requests running over max-num-seqs-ish capacity, 0..1, from the engine's /metrics."""
    ports = [p.container_port for p in pod.spec.containers[0].ports or []]
    if not pod.status.pod_ip or not ports:
        return 0.0
    try:
        text = http.get(
            f"http://{pod.status.pod_ip}:{ports[0]}/metrics", timeout=SCRAPE_TIMEOUT_SECONDS
        ).text
    except httpx.HTTPError:
        return 0.0
    running = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "vllm:num_requests_running":
                running += sample.value
    # A few concurrent sequences keep a GPU busy; the curve only needs to move with load.
    return min(1.0, running / 4.0)


class DcgmCollector(Collector):
    def __init__(self, core: client.CoreV1Api, http: httpx.Client, gpus_per_node: int) -> None:
        self.core = core
        self.http = http
        self.gpus_per_node = gpus_per_node

    def collect(self) -> Iterator[Metric]:
        listed: Any = self.core.list_node()
        nodes = sorted(str(node.metadata.name) for node in listed.items)
        running: Any = self.core.list_pod_for_all_namespaces(field_selector="status.phase=Running")
        pods: list[Any] = running.items
        families = {
            name: GaugeMetricFamily(name, help_text, labels=LABELS)
            for name, help_text in (
                ("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %)."),
                ("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB)."),
                ("DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB)."),
                ("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C)."),
            )
        }
        loads: dict[str, float] = {}
        for gpu in assign(pods, nodes, self.gpus_per_node):
            load, used = 0.0, float(DRIVER_MIB)
            if gpu.pod is not None:
                uid = gpu.pod.metadata.uid
                if uid not in loads:
                    loads[uid] = engine_load(self.http, gpu.pod)
                load = loads[uid]
                used = max(used, round(memory_fraction(gpu.pod) * MEMORY_MIB))
            labels = gpu.labels()
            families["DCGM_FI_DEV_GPU_UTIL"].add_metric(labels, round(load * 100))
            families["DCGM_FI_DEV_FB_USED"].add_metric(labels, used)
            families["DCGM_FI_DEV_FB_FREE"].add_metric(labels, MEMORY_MIB - used)
            families["DCGM_FI_DEV_GPU_TEMP"].add_metric(labels, IDLE_CELSIUS + load * BUSY_CELSIUS)
        yield from families.values()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llmservice.sandbox.gpu_exporter")
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--gpus-per-node", type=int, default=8)
    args = parser.parse_args(argv)
    api = config.new_client_from_config(config_file=args.kubeconfig)  # type: ignore[no-untyped-call]
    registry = CollectorRegistry()
    with httpx.Client() as http:
        registry.register(DcgmCollector(client.CoreV1Api(api), http, args.gpus_per_node))
        server, thread = start_http_server(args.port, args.host, registry)
        stopped = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stopped.set())
        with contextlib.suppress(KeyboardInterrupt):
            stopped.wait()
        server.shutdown()
        thread.join(timeout=5)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
