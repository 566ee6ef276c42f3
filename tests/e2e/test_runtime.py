"""The local runtime starts a process at a Pod's IP, as the Pod's ServiceAccount.

The check does not depend on which program runs for the component: it needs `/health`
(vLLM's and the router's probe path) and reads the kubeconfig the runtime wrote.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from llmservice.sandbox.apiclient import api_client
from llmservice.sandbox.cluster import Sandbox
from llmservice.sandbox.runtime.workloads import COMPONENT_LABEL, MANAGED_BY, MANAGED_BY_LABEL
from tests.e2e.manifests import deployment
from tests.e2e.probes import PORT, answers, refused
from tests.e2e.waiting import eventually

pytestmark = pytest.mark.e2e


def whoami(kubeconfig: Path) -> str:
    """Who the API server says the holder of the Pod's kubeconfig is."""
    with api_client(kubeconfig) as api:
        review: Any = client.AuthenticationV1Api(api).create_self_subject_review(
            client.V1SelfSubjectReview()
        )
        return str(review.status.user_info.username)


def test_runtime_process_answers_on_pod_ip_and_stops_with_the_pod(
    sandbox: Sandbox, apps: client.AppsV1Api, core: client.CoreV1Api, namespace: str
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

    apps.delete_namespaced_deployment("chat-engine", namespace)
    eventually(lambda: refused(f"{url}/health"), timeout=30, what=f"{url} to stop answering")
    pod_files = sandbox.dir.runtime / pod.metadata.uid
    eventually(lambda: not pod_files.exists(), timeout=10, what="the Pod's token to be removed")
