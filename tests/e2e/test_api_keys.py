"""API keys on the sandbox: keys with policies, rotated through the Secret without a restart.

An LLMService whose keys Secret holds the example keys file (defaults, priorities and
limits). Requests go to each router Pod's IP. The Secret is then updated, as a user rotates
keys: the runtime updates the mounted file atomically as a kubelet does, and every router
applies it; a broken update is rejected by the routers, which keep the last good keys, and
the operator says so in `RouterAvailable`. Every wait polls with a deadline. The service also
allows a browser origin (`router.cors`): a browser's preflight reaches every router without a
key, and the answers, 401s included, carry the CORS headers a script needs. The examples users
copy work through every router: the `/api/chat` body with its full sampling parameters, tools
and trailing nulls, and the OpenAI SDK with and without streaming.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml
from kubernetes import client

from llmservice.sandbox.cluster import Sandbox
from llmservice.sandbox.product import Product
from tests.e2e.llmservices import condition, create_llms, get_llms, minimal, wait_ready
from tests.e2e.operator_fixture import OperatorProcess, running_operator
from tests.e2e.waiting import eventually
from tests.unit.router.test_routes import API_CHAT_BODY

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_KEYS = (REPO / "examples" / "api-keys" / "keys.yaml").read_text(encoding="utf-8")
SECRET, FILE = "chat-api-keys", "keys.yaml"
ROTATION_TIMEOUT = 60
REJECTED = "rejected the new API keys file and keep the last good keys: see their logs"


def example_key(name: str) -> str:
    entries = yaml.safe_load(EXAMPLE_KEYS)["keys"]
    return str(next(entry["key"] for entry in entries if entry["name"] == name))


OLD_KEY = example_key("interactive")
NEW_KEY = "sk-rotated-interactive-5b2e90c4d1a7"
ROTATED_KEYS = EXAMPLE_KEYS.replace(OLD_KEY, NEW_KEY)
# Valid YAML, invalid keys file: a limit of 0.
BROKEN_KEYS = ROTATED_KEYS.replace("maxQueued: 10", "maxQueued: 0")


@pytest.fixture(scope="module")
def operator(
    sandbox: Sandbox, llmservice_crd: dict[str, Any], product: Product
) -> Iterator[OperatorProcess]:
    with running_operator(sandbox, product, "operator-keys.log") as process:
        yield process


def put_keys(core: client.CoreV1Api, namespace: str, text: str) -> None:
    body: Any = {"metadata": {"name": SECRET}, "stringData": {FILE: text}}
    try:
        core.replace_namespaced_secret(SECRET, namespace, body)
    except client.ApiException as error:
        if error.status != 404:
            raise
        core.create_namespaced_secret(namespace, body)


ORIGIN = "https://chat.example.com"


def status_of(
    ip: str, key: str | None, path: str = "/v1/chat/completions", origin: str | None = None
) -> tuple[int, Any]:
    """The router's answer to a small chat request with `key`: status and headers."""
    chat = {
        "model": "Qwen/Qwen2.5-0.5B-Instruct",
        "max_tokens": 8,
        "messages": [{"role": "user", "content": "Say hello."}],
    }
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    if origin is not None:
        headers["Origin"] = origin
    request = urllib.request.Request(
        f"http://{ip}:8080{path}", data=json.dumps(chat).encode(), headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            response.read()
            return response.status, response.headers
    except urllib.error.HTTPError as error:
        error.read()
        return error.code, error.headers


def preflight(ip: str) -> tuple[int, Any]:
    """A browser's CORS preflight for a chat request with a key: status and headers."""
    request = urllib.request.Request(
        f"http://{ip}:8080/v1/chat/completions",
        method="OPTIONS",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        response.read()
        return response.status, response.headers


def check_browser_access(ip: str, key: str) -> None:
    """A browser at ORIGIN may call the router: preflight, then the call, 401s readable."""
    code, headers = preflight(ip)
    assert code == 204
    assert headers["Access-Control-Allow-Origin"] == ORIGIN
    allowed = {name.strip().lower() for name in headers["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "content-type"} <= allowed
    assert "POST" in headers["Access-Control-Allow-Methods"]
    for with_key, status in ((key, 200), (None, 401)):
        code, headers = status_of(ip, with_key, origin=ORIGIN)
        assert code == status
        assert headers["Access-Control-Allow-Origin"] == ORIGIN
        assert "X-Request-ID" in headers["Access-Control-Expose-Headers"]
    code, headers = status_of(ip, key, origin="https://elsewhere.example")
    assert code == 200
    assert headers["Access-Control-Allow-Origin"] is None


MODEL = "Qwen/Qwen2.5-0.5B-Instruct"


def check_copied_examples(ip: str, key: str) -> None:
    """The requests users copy from docs and SDKs, answered by the engine through `ip`."""
    request = urllib.request.Request(
        f"http://{ip}:8080/api/chat",
        data=json.dumps(API_CHAT_BODY).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        answer = json.loads(response.read())
        assert response.status == 200
        assert response.headers["X-Session-ID"]
    assert answer["choices"][0]["message"]["role"] == "assistant"
    sdk = openai.OpenAI(base_url=f"http://{ip}:8080/v1", api_key=key, max_retries=0)
    messages: Any = [{"role": "user", "content": "Say hello."}]
    completion = sdk.chat.completions.create(model=MODEL, messages=messages, max_tokens=8)
    assert completion.choices[0].message.content
    assert completion.usage is not None
    assert completion.usage.completion_tokens > 0
    stream = sdk.chat.completions.create(model=MODEL, messages=messages, max_tokens=8, stream=True)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text
    assert next(model.id for model in sdk.models.list()) == MODEL
    assert sdk.models.retrieve(MODEL).id == MODEL


def metric(ip: str, name: str) -> float | None:
    with urllib.request.urlopen(f"http://{ip}:8080/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return None


ADOPTED = 'llmservice_router_peer_placements_total{event="adopted"}'


def check_placements_told_to_peers(ips: list[str], key: str) -> None:
    """The two router Pods found each other through their Pod watch (each left itself out),
    and a session one places is adopted by the other, over UDP between their Pod IPs."""

    def found() -> bool:
        return all(metric(ip, "llmservice_router_peers") == 1.0 for ip in ips)

    eventually(found, 60, "each router Pod to find the other as its peer")
    before = metric(ips[1], ADOPTED) or 0.0
    chat = {
        "model": "Qwen/Qwen2.5-0.5B-Instruct",
        "max_tokens": 4,
        "messages": [{"role": "user", "content": "Say hello."}],
    }
    headers = {
        "Content-Type": "application/json",
        "Authorization": f"Bearer {key}",
        "X-Session-ID": f"peers-{time.time_ns()}",
    }
    request = urllib.request.Request(
        f"http://{ips[0]}:8080/v1/chat/completions", data=json.dumps(chat).encode(), headers=headers
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        assert response.status == 200

    def adopted() -> bool:
        return (metric(ips[1], ADOPTED) or 0.0) > before

    eventually(adopted, 30, "the other router Pod to adopt the session's placement")


def router_pods(core: client.CoreV1Api, namespace: str) -> list[Any]:
    pods: list[Any] = core.list_namespaced_pod(
        namespace, label_selector="app.kubernetes.io/component=router"
    ).items
    return [p for p in pods if p.metadata.deletion_timestamp is None]


def serving_ips(core: client.CoreV1Api, namespace: str, replicas: int) -> list[str]:
    """The IPs of `replicas` router Pods that answer /readyz."""

    def ready() -> list[str] | None:
        ips = [p.status.pod_ip for p in router_pods(core, namespace) if p.status.pod_ip]
        if len(ips) != replicas:
            return None
        for ip in ips:
            try:
                with urllib.request.urlopen(f"http://{ip}:8080/readyz", timeout=2) as response:
                    if response.status != 200:
                        return None
            except OSError:
                return None
        return sorted(ips)

    return eventually(ready, 120, f"{replicas} router Pods to serve")


def test_rotated_keys_apply_without_a_restart_and_a_broken_update_is_shown(
    operator: OperatorProcess,
    sandbox: Sandbox,
    custom: client.CustomObjectsApi,
    core: client.CoreV1Api,
    namespace: str,
) -> None:
    put_keys(core, namespace, EXAMPLE_KEYS)
    router = {
        "replicas": 2,
        "apiKeysSecretRef": {"name": SECRET, "key": FILE},
        "cors": {"allowedOrigins": [ORIGIN]},
    }
    create_llms(custom, namespace, minimal(router=router))
    wait_ready(custom, namespace, "chat")
    ips = serving_ips(core, namespace, 2)
    uids = {p.metadata.uid for p in router_pods(core, namespace)}
    check_placements_told_to_peers(ips, OLD_KEY)

    for ip in ips:
        assert status_of(ip, OLD_KEY)[0] == 200
        assert status_of(ip, example_key("batch-jobs"))[0] == 200
        code, headers = status_of(ip, None)
        assert (code, headers["WWW-Authenticate"]) == (401, "Bearer")
        assert metric(ip, "llmservice_router_api_keys") == 2.0
        check_browser_access(ip, OLD_KEY)
        check_copied_examples(ip, OLD_KEY)

    # Rotation: the new key works and the old one stops, on every router, within a minute.
    put_keys(core, namespace, ROTATED_KEYS)
    rotated_at = time.monotonic()

    def rotated() -> bool:
        return all(
            status_of(ip, NEW_KEY)[0] == 200 and status_of(ip, OLD_KEY)[0] == 401 for ip in ips
        )

    eventually(rotated, ROTATION_TIMEOUT, "every router to take the rotated key")
    print(f"rotation applied by every router in {time.monotonic() - rotated_at:.1f}s")
    # Without a restart: the same Pods, their processes never restarted.
    assert {p.metadata.uid for p in router_pods(core, namespace)} == uids
    for pod in router_pods(core, namespace):
        assert pod.status.container_statuses[0].restart_count == 0

    # A broken update: rejected by every router, the last good keys stay, and the operator
    # says so in RouterAvailable (which stays True: the routers serve).
    put_keys(core, namespace, BROKEN_KEYS)
    broken_at = time.monotonic()

    def rejection_shown() -> dict[str, Any] | None:
        available = condition(get_llms(custom, namespace, "chat"), "RouterAvailable")
        return available if REJECTED in available.get("message", "") else None

    available = eventually(rejection_shown, 90, "RouterAvailable to show the rejected file")
    print(f"rejection shown in RouterAvailable in {time.monotonic() - broken_at:.1f}s")
    assert available["status"] == "True"
    assert available["message"].startswith("2/2 replicas ready; 2 router replicas ")
    for ip in ips:
        assert status_of(ip, NEW_KEY)[0] == 200
        assert status_of(ip, OLD_KEY)[0] == 401
        assert metric(ip, "llmservice_router_api_keys_file_valid") == 0.0
        assert metric(ip, "llmservice_router_api_keys_reload_failures_total") == 1.0
    for uid in uids:
        log = (sandbox.dir.runtime / uid / "process.log").read_text(encoding="utf-8")
        rejections = [
            json.loads(line) for line in log.splitlines()
            if line.startswith("{") and "Rejected the new API keys file" in line
        ]  # fmt: skip
        assert rejections, f"no rejection logged by router Pod {uid}"
        assert "keys[1] (batch-jobs).maxQueued" in rejections[-1]["msg"]
        for key in (OLD_KEY, NEW_KEY, example_key("batch-jobs")):
            assert key not in log

    # Fixed again: the message clears.
    put_keys(core, namespace, ROTATED_KEYS)

    def cleared() -> bool:
        available = condition(get_llms(custom, namespace, "chat"), "RouterAvailable")
        return bool(available.get("message") == "2/2 replicas ready")

    eventually(cleared, 90, "RouterAvailable to drop the rejected file")
