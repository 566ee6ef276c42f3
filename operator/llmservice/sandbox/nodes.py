"""The simulated GPU nodes that kwok plays the kubelet for.

Nodes are created with their status (capacity and allocatable including `nvidia.com/gpu`)
in the same call; kwok then keeps them Ready with lease heartbeats. A new node carries the
not-ready taint until the controller-manager sees it Ready and removes it: only then can
the scheduler place Pods, so "Ready" here means both.
"""

from __future__ import annotations

from typing import Any

from kubernetes import client

from llmservice.sandbox.layout import GPU_RESOURCE, Settings

NODE_PREFIX = "gpu-node-"
NOT_READY_TAINTS = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")


def node_names(settings: Settings) -> list[str]:
    return [f"{NODE_PREFIX}{i}" for i in range(settings.nodes)]


def node_manifest(name: str, settings: Settings) -> dict[str, Any]:
    resources = {
        "cpu": settings.node_cpu,
        "memory": settings.node_memory,
        "pods": settings.node_pods,
        GPU_RESOURCE: str(settings.gpus_per_node),
    }
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"kwok.x-k8s.io/node": "fake"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
                "nvidia.com/gpu.present": "true",
            },
        },
        "spec": {},
        "status": {"capacity": resources, "allocatable": resources},
    }


def ensure_nodes(api: client.CoreV1Api, settings: Settings) -> None:
    """Create the nodes that do not exist yet (idempotent)."""
    listed: list[Any] = api.list_node().items
    existing = {n.metadata.name for n in listed}
    for name in node_names(settings):
        if name not in existing:
            body: Any = node_manifest(name, settings)
            api.create_node(body)


def node_ready(node: Any) -> bool:
    """Ready condition True, no not-ready taint, and GPU capacity advertised."""
    conditions = node.status.conditions or []
    ready = any(c.type == "Ready" and c.status == "True" for c in conditions)
    taints = node.spec.taints or []
    tainted = any(t.key in NOT_READY_TAINTS for t in taints)
    gpus = (node.status.allocatable or {}).get(GPU_RESOURCE)
    return ready and not tainted and gpus not in (None, "0")


def all_ready(api: client.CoreV1Api, settings: Settings) -> bool:
    listed: list[Any] = api.list_node().items
    nodes = {n.metadata.name: n for n in listed}
    return all(name in nodes and node_ready(nodes[name]) for name in node_names(settings))
