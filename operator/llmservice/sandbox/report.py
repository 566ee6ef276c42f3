"""What the sandbox tells a person: how to use it after `up`, and `status`."""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, Any

from kubernetes import client

from llmservice.sandbox.apiclient import api_client
from llmservice.sandbox.layout import GPU_RESOURCE, default_directory
from llmservice.sandbox.runtime.records import load_all
from llmservice.sandbox.state import SandboxState

if TYPE_CHECKING:
    from llmservice.sandbox.cluster import Sandbox


def env_command(sandbox: Sandbox) -> str:
    """`llmservice sandbox env`, with `--dir` when the sandbox is not in the default place."""
    if sandbox.dir.root.resolve() == default_directory().resolve():
        return "llmservice sandbox env"
    return f"llmservice sandbox --dir {shlex.quote(str(sandbox.dir.root))} env"


def usage(sandbox: Sandbox, state: SandboxState, elapsed: float, operator: bool = False) -> str:
    """What to do next; with the operator installed, how to watch the example turn Ready."""
    settings = state.settings
    lines = [
        f"Sandbox up in {elapsed:.1f}s: Kubernetes {state.kubernetes_version} at "
        f"{state.ports.apiserver_url}, {settings.nodes} nodes with "
        f"{settings.gpus_per_node} {GPU_RESOURCE} each, Pod IPs from {settings.pod_cidr}.",
    ]
    if operator:
        lines += [
            "The operator runs in namespace llmservice-system; LLMService `chat`",
            "(examples/minimal.yaml) is applied in namespace default.",
            "",
            "Watch it:",
            f'  eval "$({env_command(sandbox)})"',
            "  kubectl get llms -w",
            "  kubectl wait --for=condition=Ready llms/chat --timeout=3m",
            "  kubectl get pods -A",
        ]
    else:
        lines += [
            "",
            "Use it:",
            f"  export KUBECONFIG={sandbox.kubeconfig}",
            "  kubectl get nodes",
        ]
    lines += [
        "",
        "  llmservice sandbox status    # processes, nodes, Pod processes",
        "  llmservice sandbox down      # stop everything and remove its files",
    ]
    return "\n".join(lines)


def describe_status(sandbox: Sandbox) -> tuple[str, bool]:
    """A readable status, and whether the sandbox is healthy."""
    state = sandbox.load()
    if state is None:
        return "No sandbox is running (start one with `llmservice sandbox up`).", False
    healthy = sandbox.healthy(state)
    lines = [
        f"Sandbox in {sandbox.dir.root}: {'healthy' if healthy else 'NOT healthy'}",
        f"  API server {state.ports.apiserver_url} (Kubernetes {state.kubernetes_version})",
        f"  KUBECONFIG={sandbox.kubeconfig}",
        "Processes:",
    ]
    for record in state.processes:
        mark = "running" if record.alive() else "STOPPED"
        lines.append(f"  {record.name:<24} pid {record.pid:<8} {mark}  log {record.log}")
    if healthy:
        with api_client(sandbox.kubeconfig) as api:
            nodes: list[Any] = client.CoreV1Api(api).list_node().items
        lines.append("Nodes:")
        for node in nodes:
            ready = any(
                c.type == "Ready" and c.status == "True" for c in node.status.conditions or []
            )
            gpus = (node.status.allocatable or {}).get(GPU_RESOURCE, "0")
            lines.append(
                f"  {node.metadata.name:<24} {'Ready' if ready else 'NotReady':<9} {gpus} GPUs"
            )
    pods = load_all(sandbox.dir.runtime)
    if pods:
        lines.append("Pod processes:")
        for pod in pods.values():
            mark = "running" if pod.process.alive() else "STOPPED"
            lines.append(
                f"  {pod.namespace}/{pod.name:<30} {pod.component:<8} {pod.ip}:{pod.port} "
                f"pid {pod.process.pid} {mark}"
            )
    return "\n".join(lines), healthy
