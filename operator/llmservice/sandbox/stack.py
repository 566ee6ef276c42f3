"""The project on a running sandbox: the operator from `deploy/`, an example, and traffic.

`llmservice sandbox up` runs these once the control plane is Ready (unless `--no-operator`);
the e2e fixture does not, so its tests start from a bare cluster. Installing goes through
`kubectl apply -k deploy/` with the sandbox's admin kubeconfig, the same command a person
types; the local runtime then runs the operator's Pod as a process that authenticates as
the operator's ServiceAccount, so the RBAC in `deploy/` is what it really gets.

Every wait is bounded, polls a condition and says what it waits for.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
from kubernetes import client

from llmservice.sandbox import health
from llmservice.sandbox.apiclient import api_client
from llmservice.sandbox.cluster import Sandbox
from llmservice.sandbox.errors import SandboxError
from llmservice.sandbox.progress import Progress
from llmservice.sandbox.runtime.records import PodProcess, load_all

SOURCE = Path(__file__).resolve().parents[3]
DEPLOY_DIR = SOURCE / "deploy"
EXAMPLE = SOURCE / "examples" / "minimal.yaml"
EXAMPLE_NAME = "chat"
EXAMPLE_NAMESPACE = "default"
OPERATOR_NAMESPACE = "llmservice-system"
CRD_NAME = "llmservices.serving.llmservice.dev"
GROUP, VERSION, PLURAL = "serving.llmservice.dev", "v1alpha1", "llmservices"
ROUTER_PORT = 8080

KUBECTL_TIMEOUT = 120.0
CRD_TIMEOUT = 60.0
OPERATOR_TIMEOUT = 90.0
READY_TIMEOUT = 180.0
# The real vLLM on a loaded 2-core machine takes minutes to start (compiling on its first start).
REAL_ENGINE_READY_TIMEOUT = 900.0
ROUTER_TIMEOUT = 60.0
THROUGHPUT_TIMEOUT = 90.0
REQUESTS = 20
REQUEST_TIMEOUT = 60.0
POLL_SECONDS = 1.0
HEARTBEAT_SECONDS = 15.0
T = TypeVar("T")


def require_kubectl() -> str:
    """The kubectl on the PATH; checked before the cluster starts, so `up` fails fast."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise SandboxError(
            "kubectl is not on the PATH (it installs the operator from deploy/)",
            "install kubectl, or pass --no-operator for a bare cluster",
        )
    return kubectl


def require_source() -> None:
    """`deploy/` and the example come from a source checkout, not from an installed wheel."""
    for needed in (DEPLOY_DIR / "kustomization.yaml", EXAMPLE):
        if not needed.is_file():
            raise SandboxError(
                f"{needed} not found: the operator is installed from a source checkout",
                "run from a clone of the repository, or pass --no-operator",
            )


def kubectl(sandbox: Sandbox, *args: str, timeout: float = KUBECTL_TIMEOUT) -> str:
    """Run kubectl against the sandbox; its output, or a SandboxError with its message."""
    argv = [require_kubectl(), "--kubeconfig", str(sandbox.kubeconfig), *args]
    try:
        result = subprocess.run(  # noqa: S603 - fixed kubectl argv, no shell
            argv, capture_output=True, text=True, check=False, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        raise SandboxError(f"kubectl {' '.join(args)} timed out after {timeout:.0f}s") from None
    if result.returncode != 0:
        lines = [ln for ln in result.stderr.splitlines() if ln.strip()] or ["no output"]
        raise SandboxError(f"kubectl {' '.join(args)} failed: {lines[-1][:300]}")
    return result.stdout


def operator_processes(sandbox: Sandbox) -> list[PodProcess]:
    """The processes the runtime started for the operator's Pods, alive or not."""
    return [
        pod
        for pod in load_all(sandbox.dir.runtime).values()
        if pod.component == "operator" and pod.namespace == OPERATOR_NAMESPACE
    ]


def operator_process(sandbox: Sandbox) -> PodProcess | None:
    """The live process of the operator's Pod, if any."""
    return next((p for p in operator_processes(sandbox) if p.process.alive()), None)


def healthz(pod: PodProcess) -> str:
    return f"http://{pod.ip}:{pod.port}/healthz"


def _wait(progress: Progress, condition: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll `condition` until it returns something truthy, with a heartbeat line."""
    started = time.monotonic()
    beat = started
    while True:
        value = condition()
        if value:
            return value
        now = time.monotonic()
        if now - started > timeout:
            raise SandboxError(f"timed out after {timeout:.0f}s waiting for {what}")
        if now - beat >= HEARTBEAT_SECONDS:
            progress.say(f"still waiting for {what} ({now - started:.0f}s)")
            beat = now
        time.sleep(POLL_SECONDS)


def install_operator(sandbox: Sandbox, progress: Progress) -> PodProcess | None:
    """Apply `deploy/`, wait for the CRD, then for the operator's liveness endpoint.

    Returns the operator's process, or None when the local runtime is off (then nothing in
    the sandbox runs the operator's Pod: run `llmservice operator` beside it).
    """
    with progress.step("installing the CRD and the operator (kubectl apply -k deploy/)"):
        kubectl(sandbox, "apply", "-k", str(DEPLOY_DIR))
        kubectl(
            sandbox,
            "wait",
            "--for=condition=Established",
            f"crd/{CRD_NAME}",
            f"--timeout={CRD_TIMEOUT:.0f}s",
            timeout=CRD_TIMEOUT + 10,
        )
    state = sandbox.load()
    if state is None or not state.settings.runtime:
        progress.say("the local runtime is off: nothing runs the operator's Pod")
        return None

    def live() -> PodProcess | None:
        pod = operator_process(sandbox)
        return pod if pod is not None and health.http_ok(healthz(pod)) else None

    with progress.step("starting the operator (its Pod's process, as its ServiceAccount)"):
        try:
            pod = _wait(progress, live, OPERATOR_TIMEOUT, "the operator's liveness endpoint")
        except SandboxError as exc:
            started = operator_processes(sandbox)
            fix = (
                f"see the operator's log {started[-1].process.log}"
                if started
                else "see `kubectl get pods -n llmservice-system` and `llmservice sandbox status`"
            )
            raise SandboxError(exc.cause, fix) from None
    progress.say(f"operator running as Pod {pod.namespace}/{pod.name} (log {pod.process.log})")
    return pod


def apply_example(
    sandbox: Sandbox,
    progress: Progress,
    path: Path = EXAMPLE,
    namespace: str = EXAMPLE_NAMESPACE,
) -> None:
    with progress.step(f"applying {path.name} in namespace {namespace}"):
        kubectl(sandbox, "apply", "--namespace", namespace, "-f", str(path))


def _ready(custom: client.CustomObjectsApi, name: str, namespace: str) -> bool:
    obj: Any = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    status = obj.get("status") or {}
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    ) and status.get("observedGeneration") == obj["metadata"].get("generation")


def _generation_rate(custom: client.CustomObjectsApi, name: str, namespace: str) -> float:
    obj: Any = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    throughput = (obj.get("status") or {}).get("throughput") or {}
    try:
        return float(throughput.get("generationTokensPerSecond") or 0)
    except (TypeError, ValueError):
        return 0.0


def _router_address(core: client.CoreV1Api, name: str, namespace: str) -> str | None:
    selector = f"app.kubernetes.io/instance={name},app.kubernetes.io/component=router"
    pods: list[Any] = core.list_namespaced_pod(namespace, label_selector=selector).items
    for pod in pods:
        # Ready comes from the router's own /readyz probe (the local runtime runs it).
        ready = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
        if ready and pod.status.pod_ip and not pod.metadata.deletion_timestamp:
            return f"http://{pod.status.pod_ip}:{ROUTER_PORT}"
    return None


def _served_model(http: httpx.Client, url: str) -> str:
    """The first model name the router serves (`/v1/models`)."""
    try:
        response = http.get(f"{url}/v1/models", timeout=REQUEST_TIMEOUT)
        response.raise_for_status()
        return str(response.json()["data"][0]["id"])
    except (httpx.HTTPError, ValueError, KeyError, IndexError) as exc:
        raise SandboxError(f"the router at {url} lists no model: {exc}") from None


def _chat(http: httpx.Client, url: str, model: str, turn: int) -> int:
    """One chat completion through the router; the completion tokens it reports."""
    response = http.post(
        f"{url}/v1/chat/completions",
        json={
            "model": model,
            "messages": [{"role": "user", "content": f"Say something about Kubernetes #{turn}."}],
            "max_tokens": 64,
        },
        headers={"X-Session-ID": f"sandbox-{turn % 4}"},
        timeout=REQUEST_TIMEOUT,
    )
    response.raise_for_status()
    usage = response.json().get("usage") or {}
    return int(usage.get("completion_tokens") or 0)


def send_traffic_and_show_throughput(
    sandbox: Sandbox,
    progress: Progress,
    name: str = EXAMPLE_NAME,
    namespace: str = EXAMPLE_NAMESPACE,
    ready_timeout: float = READY_TIMEOUT,
) -> str:
    """Wait for the LLMService to be Ready, send chat completions through its router until
    its status shows generation tokens per second, and return `kubectl get llms`.

    Traffic keeps flowing while the status is polled: the operator takes rates between two
    scrapes of the engine metrics, so a burst that ended before a scrape window shows none.
    """
    with api_client(sandbox.kubeconfig) as api:
        custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
        with progress.step(f"waiting for LLMService {namespace}/{name} to be Ready"):
            _wait(progress, lambda: _ready(custom, name, namespace), ready_timeout, f"{name} Ready")
        with progress.step("finding the router Pod"):
            url = _wait(
                progress,
                lambda: _router_address(core, name, namespace),
                ROUTER_TIMEOUT,
                f"a ready router Pod of {name}",
            )
        with httpx.Client() as http:
            model = _served_model(http, url)
            with progress.step(f"sending chat completions to {url} ({model})"):
                sent, tokens = 0, 0
                started = time.monotonic()
                while True:
                    try:
                        tokens += _chat(http, url, model, sent)
                    except httpx.HTTPError as exc:
                        raise SandboxError(
                            f"request {sent + 1} through the router at {url} failed: {exc}",
                            "see the router's log (`llmservice sandbox status` lists it)",
                        ) from None
                    sent += 1
                    if sent % 5 == 0:
                        progress.say(f"{sent} requests, {tokens} completion tokens")
                    if sent >= REQUESTS and _generation_rate(custom, name, namespace) > 0:
                        break
                    if time.monotonic() - started > THROUGHPUT_TIMEOUT:
                        raise SandboxError(
                            f"timed out after {THROUGHPUT_TIMEOUT:.0f}s waiting for "
                            f"{name}'s status to show tokens per second ({sent} requests sent)",
                            "see the operator's log (`llmservice sandbox status`)",
                        )
    return kubectl(sandbox, "get", "llms", "--namespace", namespace)
