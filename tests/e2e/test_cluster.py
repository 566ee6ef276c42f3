"""The control plane behaves like a real cluster with GPU nodes."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from llmservice.sandbox.cluster import Sandbox
from tests.e2e.manifests import GPU, deployment
from tests.e2e.waiting import eventually

pytestmark = pytest.mark.e2e


def test_nodes_are_ready_with_gpu_capacity(sandbox: Sandbox, core: client.CoreV1Api) -> None:
    nodes: list[Any] = core.list_node().items
    assert len(nodes) == sandbox.settings.nodes
    for node in nodes:
        ready = [c.status for c in node.status.conditions if c.type == "Ready"]
        assert ready == ["True"], node.metadata.name
        assert node.status.capacity[GPU] == str(sandbox.settings.gpus_per_node)
        assert node.status.allocatable[GPU] == str(sandbox.settings.gpus_per_node)
        assert not [t for t in node.spec.taints or [] if t.key.startswith("node.kubernetes.io/")]


def test_gpu_deployment_rolls_out_to_available(apps: client.AppsV1Api, namespace: str) -> None:
    apps.create_namespaced_deployment(namespace, deployment("gpu", replicas=2, gpus=4))

    def available() -> bool:
        status: Any = apps.read_namespaced_deployment_status("gpu", namespace).status
        conditions = {c.type: c.status for c in status.conditions or []}
        return status.available_replicas == 2 and conditions.get("Available") == "True"

    eventually(available, timeout=60, what="Deployment gpu to be Available")


def test_too_many_gpus_stays_pending_with_failed_scheduling(
    sandbox: Sandbox, apps: client.AppsV1Api, core: client.CoreV1Api, namespace: str
) -> None:
    too_many = sandbox.settings.gpus_per_node + 1
    apps.create_namespaced_deployment(namespace, deployment("huge", gpus=too_many))

    def failed_scheduling() -> str | None:
        events: list[Any] = core.list_namespaced_event(namespace).items
        for event in events:
            if event.reason == "FailedScheduling" and GPU in (event.message or ""):
                return str(event.message)
        return None

    message = eventually(failed_scheduling, timeout=60, what="a FailedScheduling event")
    assert f"Insufficient {GPU}" in message
    pods: list[Any] = core.list_namespaced_pod(namespace, label_selector="app=huge").items
    assert len(pods) == 1
    assert pods[0].status.phase == "Pending"
    assert not pods[0].spec.node_name


def test_garbage_collection_removes_owned_children(
    apps: client.AppsV1Api, core: client.CoreV1Api, namespace: str
) -> None:
    owner_body: Any = {"metadata": {"name": "owner"}, "data": {"k": "v"}}
    owner: Any = core.create_namespaced_config_map(namespace, owner_body)
    reference = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "owner",
        "uid": owner.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }
    child: Any = {"metadata": {"name": "child", "ownerReferences": [reference]}}
    core.create_namespaced_config_map(namespace, child)
    apps.create_namespaced_deployment(namespace, deployment("owned", replicas=1))
    eventually(
        lambda: core.list_namespaced_pod(namespace, label_selector="app=owned").items,
        timeout=60,
        what="the Deployment's Pod",
    )

    core.delete_namespaced_config_map("owner", namespace)
    apps.delete_namespaced_deployment("owned", namespace, propagation_policy="Background")

    def children_gone() -> bool:
        listed: list[Any] = core.list_namespaced_config_map(namespace).items
        config_maps = {c.metadata.name for c in listed}
        replica_sets = apps.list_namespaced_replica_set(namespace).items
        pods = core.list_namespaced_pod(namespace, label_selector="app=owned").items
        return "child" not in config_maps and not replica_sets and not pods

    eventually(children_gone, timeout=90, what="owned children to be garbage-collected")
