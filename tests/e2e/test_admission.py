"""Admission on the sandbox: an LLMService's limits reach its router and priority its engine."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from llmservice.sandbox.cluster import Sandbox
from llmservice.sandbox.product import Product
from tests.e2e.llmservices import create_llms, minimal, wait_ready
from tests.e2e.operator_fixture import OperatorProcess, running_operator
from tests.e2e.waiting import eventually

pytestmark = pytest.mark.e2e

KEY = "sk-admission-0123456789abcdef"
KEYS_FILE = f"keys:\n  - name: e2e-admission\n    key: {KEY}\n"


@pytest.fixture(scope="module")
def operator(
    sandbox: Sandbox, llmservice_crd: dict[str, Any], product: Product
) -> Iterator[OperatorProcess]:
    with running_operator(sandbox, product, "operator-admit.log") as process:
        yield process


def post(url: str, body: dict[str, Any]) -> tuple[int, dict[str, str], dict[str, Any]]:
    request = urllib.request.Request(  # noqa: S310 - a Pod IP
        url, data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - Pod IP
            headers = {k.lower(): v for k, v in response.headers.items()}
            return response.status, headers, json.loads(response.read())
    except urllib.error.HTTPError as error:
        headers = {k.lower(): v for k, v in error.headers.items()}
        return error.code, headers, json.loads(error.read())


def test_limits_reach_the_router_and_key_priority_the_engine(
    operator: OperatorProcess, kube: client.ApiClient, core: client.CoreV1Api, namespace: str
) -> None:
    secret: Any = {"metadata": {"name": "keys"}, "stringData": {"keys.yaml": KEYS_FILE}}
    core.create_namespaced_secret(namespace, secret)
    router = {
        "replicas": 1,
        "apiKeysSecretRef": {"name": "keys", "key": "keys.yaml"},
        "admission": {"requestsPerMinute": 3, "maxInFlightPerReplica": 1},
    }
    custom = client.CustomObjectsApi(kube)
    create_llms(custom, namespace, minimal(router=router))
    wait_ready(custom, namespace, "chat")
    pods = core.list_namespaced_pod(
        namespace, label_selector="app.kubernetes.io/component=router"
    ).items
    url = f"http://{pods[0].status.pod_ip}:8080"

    def router_ready() -> bool:
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=2) as response:  # noqa: S310
                return bool(response.status == 200)
        except OSError:
            return False

    eventually(router_ready, 60, "the router to discover the engine")
    chat = {
        "model": "Qwen/Qwen2.5-0.5B-Instruct",
        "max_tokens": 4,
        "messages": [{"role": "user", "content": "Say hello."}],
        "priority": 0,  # replaced by the key's: the engine runs priority scheduling
    }
    # The router sends every request with its key's priority; an engine without
    # --scheduling-policy priority would answer 400, so three 200s show it has it.
    for _ in range(3):
        status, _, body = post(url + "/v1/chat/completions", chat)
        assert status == 200, body
    status, headers, body = post(url + "/v1/chat/completions", chat)
    assert status == 429, body
    assert body["error"]["code"] == "global_rate_limit"
    assert int(headers["retry-after"]) >= 1
    assert headers["x-ratelimit-limit-requests"] == "3"
    with urllib.request.urlopen(url + "/metrics", timeout=5) as response:  # noqa: S310
        metrics = response.read().decode()
    assert "llmservice_router_in_flight_limit{replica=" in metrics
    assert (
        'llmservice_router_rejected_total{key="e2e-admission",reason="global_rate_limit"} 1.0'
        in metrics
    )
