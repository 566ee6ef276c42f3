"""The local runtime starts a process at a Pod's IP, as the Pod's ServiceAccount.

The check does not depend on which program runs for the component: it needs `/health`
(vLLM's and the router's probe path) and reads the kubeconfig the runtime wrote.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from llmservice.sandbox.apiclient import api_client
from llmservice.sandbox.cluster import Sandbox
from llmservice.sandbox.product import Product
from llmservice.sandbox.runtime.records import load_all
from llmservice.sandbox.runtime.workloads import COMPONENT_LABEL, MANAGED_BY, MANAGED_BY_LABEL
from tests.e2e.installed import assert_runs_product
from tests.e2e.manifests import deployment
from tests.e2e.probes import PORT, answers, refused
from tests.e2e.waiting import eventually, holds_for

pytestmark = pytest.mark.e2e


def whoami(kubeconfig: Path) -> str:
    """Who the API server says the holder of the Pod's kubeconfig is."""
    with api_client(kubeconfig) as api:
        review: Any = client.AuthenticationV1Api(api).create_self_subject_review(
            client.V1SelfSubjectReview()
        )
        return str(review.status.user_info.username)


def test_runtime_process_answers_on_pod_ip_and_stops_with_the_pod(
    sandbox: Sandbox,
    apps: client.AppsV1Api,
    core: client.CoreV1Api,
    namespace: str,
    product: Product,
) -> None:
    account: Any = {"metadata": {"name": "engine"}}
    core.create_namespaced_service_account(namespace, account)
    labels = {MANAGED_BY_LABEL: MANAGED_BY, COMPONENT_LABEL: "engine"}
    body = deployment("chat-engine", labels=labels, port=PORT, service_account="engine")
    apps.create_namespaced_deployment(namespace, body)

    def running_pod() -> Any:
        pods: list[Any] = core.list_namespaced_pod(
            namespace, label_selector="app=chat-engine"
        ).items
        ready = [p for p in pods if p.status.phase == "Running" and p.status.pod_ip]
        return ready[0] if ready else None

    pod = eventually(running_pod, timeout=60, what="a Running engine Pod with an IP")
    ip = pod.status.pod_ip
    assert ip.startswith("127."), ip
    url = f"http://{ip}:{PORT}"

    eventually(lambda: answers(f"{url}/health"), timeout=30, what=f"{url}/health to answer")
    assert whoami(sandbox.dir.runtime / pod.metadata.uid / "kubeconfig") == (
        f"system:serviceaccount:{namespace}:engine"
    )
    # The process is the installed wheel, as the image would run it.
    assert_runs_product(load_all(sandbox.dir.runtime)[pod.metadata.uid].process.pid, product)

    apps.delete_namespaced_deployment("chat-engine", namespace)
    eventually(lambda: refused(f"{url}/health"), timeout=30, what=f"{url} to stop answering")
    pod_files = sandbox.dir.runtime / pod.metadata.uid
    eventually(lambda: not pod_files.exists(), timeout=10, what="the Pod's token to be removed")


ENGINE_LABELS = {MANAGED_BY_LABEL: MANAGED_BY, COMPONENT_LABEL: "engine"}


def only_pod(core: client.CoreV1Api, namespace: str, app: str) -> Any:
    pods: list[Any] = core.list_namespaced_pod(namespace, label_selector=f"app={app}").items
    return pods[0] if len(pods) == 1 else None


def pod_ready(pod: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def waiting_reason(pod: Any) -> str | None:
    statuses = pod.status.container_statuses or []
    waiting = statuses[0].state.waiting if statuses else None
    return waiting.reason if waiting else None


def kubelet_events(core: client.CoreV1Api, namespace: str, pod: Any, reason: str) -> list[str]:
    selector = f"involvedObject.name={pod.metadata.name},reason={reason}"
    events: list[Any] = core.list_namespaced_event(namespace, field_selector=selector).items
    return [e.message for e in events if e.source and e.source.component == "kubelet"]


def test_pod_is_ready_only_when_its_readiness_probe_passes(
    apps: client.AppsV1Api, core: client.CoreV1Api, namespace: str
) -> None:
    # Two engine Pods, one probing the simulator's /health and one a path it answers 404.
    for app, path in (("probe-ok", "/health"), ("probe-bad", "/no-such-path")):
        body = deployment(app, labels=ENGINE_LABELS, port=PORT, readiness_path=path)
        apps.create_namespaced_deployment(namespace, body)

    ok = eventually(
        lambda: (p := only_pod(core, namespace, "probe-ok")) and pod_ready(p) and p,
        timeout=60,
        what="the Pod probing /health to be Ready",
    )
    assert ok.status.phase == "Running"
    assert ok.status.container_statuses[0].state.running is not None

    bad = eventually(
        lambda: (
            (p := only_pod(core, namespace, "probe-bad"))
            and p.status.phase == "Running"
            and answers(f"http://{p.status.pod_ip}:{PORT}/health")
            and p
        ),
        timeout=60,
        what="the Pod probing a 404 path to run and serve",
    )
    holds_for(
        lambda: not pod_ready(core.read_namespaced_pod(bad.metadata.name, namespace)),
        duration=5,
        what="the Pod whose probe fails being unready",
    )


def test_missing_secret_in_env_is_a_config_error_until_it_exists(
    apps: client.AppsV1Api, core: client.CoreV1Api, namespace: str
) -> None:
    body = deployment("needs-token", labels=ENGINE_LABELS, port=PORT, readiness_path="/health")
    container = body["spec"]["template"]["spec"]["containers"][0]
    container["env"] = [
        {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token"}}}
    ]
    apps.create_namespaced_deployment(namespace, body)

    pod = eventually(
        lambda: (
            (p := only_pod(core, namespace, "needs-token"))
            and waiting_reason(p) == "CreateContainerConfigError"
            and p
        ),
        timeout=60,
        what="CreateContainerConfigError on the Pod",
    )
    assert pod.status.phase == "Pending"
    assert pod.status.container_statuses[0].state.waiting.message == 'secret "hf-token" not found'
    assert not pod_ready(pod)
    assert eventually(
        lambda: kubelet_events(core, namespace, pod, "Failed"), 30, "a Failed Event"
    ) == ['Error: secret "hf-token" not found']

    secret: Any = {"metadata": {"name": "hf-token"}, "stringData": {"token": "hf_e2e"}}
    core.create_namespaced_secret(namespace, secret)
    eventually(
        lambda: pod_ready(core.read_namespaced_pod(pod.metadata.name, namespace)),
        timeout=60,
        what="the Pod to start and be Ready once the Secret exists",
    )


def test_missing_secret_volume_fails_to_mount_until_it_exists(
    apps: client.AppsV1Api, core: client.CoreV1Api, namespace: str
) -> None:
    body = deployment("needs-keys", labels=ENGINE_LABELS, port=PORT, readiness_path="/health")
    spec = body["spec"]["template"]["spec"]
    spec["volumes"] = [{"name": "api-keys", "secret": {"secretName": "router-keys"}}]
    spec["containers"][0]["volumeMounts"] = [{"name": "api-keys", "mountPath": "/etc/keys"}]
    apps.create_namespaced_deployment(namespace, body)

    pod = eventually(
        lambda: (p := only_pod(core, namespace, "needs-keys")) and p.status.pod_ip and p,
        timeout=60,
        what="the Pod to get an IP",
    )
    messages = eventually(
        lambda: kubelet_events(core, namespace, pod, "FailedMount"), 30, "a FailedMount Event"
    )
    assert messages == [
        'MountVolume.SetUp failed for volume "api-keys" : secret "router-keys" not found'
    ]
    creating: Any = core.read_namespaced_pod(pod.metadata.name, namespace)
    assert (creating.status.phase, waiting_reason(creating)) == ("Pending", "ContainerCreating")

    secret: Any = {"metadata": {"name": "router-keys"}, "stringData": {"keys.yaml": "keys: []"}}
    core.create_namespaced_secret(namespace, secret)
    eventually(
        lambda: pod_ready(core.read_namespaced_pod(pod.metadata.name, namespace)),
        timeout=60,
        what="the Pod to mount, start and be Ready once the Secret exists",
    )


def test_a_mounted_secret_follows_its_updates_atomically_while_the_process_runs(
    sandbox: Sandbox, apps: client.AppsV1Api, core: client.CoreV1Api, namespace: str
) -> None:
    secret: Any = {"metadata": {"name": "files"}, "stringData": {"a.txt": "one", "skip": "x"}}
    core.create_namespaced_secret(namespace, secret)
    body = deployment("mounted", labels=ENGINE_LABELS, port=PORT)
    pod_spec = body["spec"]["template"]["spec"]
    pod_spec["volumes"] = [
        {"name": "files", "secret": {"secretName": "files", "items": [
            {"key": "a.txt", "path": "a.txt"}]}}
    ]  # fmt: skip
    pod_spec["containers"][0]["volumeMounts"] = [{"name": "files", "mountPath": "/etc/files"}]
    apps.create_namespaced_deployment(namespace, body)
    pod = eventually(
        lambda: (p := only_pod(core, namespace, "mounted")) and p.status.phase == "Running" and p,
        timeout=60,
        what="the Pod with a Secret volume to run",
    )
    volume = sandbox.dir.runtime / pod.metadata.uid / "volumes" / "files"
    # The kubelet's layout: the file is a symlink through ..data; only the listed item is there.
    assert os.readlink(volume / "a.txt") == "..data/a.txt"
    assert (volume / "..data").is_symlink()
    assert (volume / "a.txt").read_text() == "one"
    assert not (volume / "skip").exists()
    pid = load_all(sandbox.dir.runtime)[pod.metadata.uid].process.pid

    secret["stringData"] = {"a.txt": "two"}
    core.replace_namespaced_secret("files", namespace, secret)
    eventually(lambda: (volume / "a.txt").read_text() == "two", 15, "the file to follow")
    versions = [p for p in volume.iterdir() if p.name.startswith("..") and not p.is_symlink()]
    assert len(versions) == 1, versions  # the old version is gone
    assert load_all(sandbox.dir.runtime)[pod.metadata.uid].process.pid == pid

    # A Secret deleted under a running Pod leaves its files as they were, as a kubelet does.
    core.delete_namespaced_secret("files", namespace)
    eventually(
        lambda: kubelet_events(core, namespace, pod, "FailedMount"), 15, "a FailedMount Event"
    )
    assert (volume / "a.txt").read_text() == "two"
