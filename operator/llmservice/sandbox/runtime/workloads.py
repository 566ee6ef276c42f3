"""Which process the runtime starts for which Pod: one small table.

Only the project's own workloads get a process: Pods labelled
`app.kubernetes.io/managed-by: llmservice-operator` whose `app.kubernetes.io/component` is
a key of `COMMANDS`. Each entry turns the Pod's first container (its args, already with
mount paths rewritten to local files) into an argv bound to the Pod IP and port.

Switching a component to another program is a one-line change of that table.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "llmservice-operator"
COMPONENT_LABEL = "app.kubernetes.io/component"
POD_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY}"
DEFAULT_PORT = 8000


@dataclass(frozen=True)
class PodLaunch:
    """What a command builder gets: the Pod's identity, address and container args."""

    namespace: str
    name: str
    component: str
    ip: str
    port: int
    args: Sequence[str]


def llmservice_command(subcommand: str, *extra: str) -> Callable[[PodLaunch], list[str]]:
    """`llmservice SUBCOMMAND <container args> [extra] --host IP --port PORT`.

    The container's args come first so that the Pod-IP binding added last wins: argparse
    keeps the last value of a repeated option, and the image's own `--host 0.0.0.0` means
    nothing on this machine. A Pod whose command is `llmservice` carries the subcommand as
    its first arg; it is dropped, since it is already there. `extra` may name `{pod}`.
    """

    def build(pod: PodLaunch) -> list[str]:
        args = list(pod.args)
        if args[:1] == [subcommand]:
            args = args[1:]
        return [
            sys.executable, "-m", "llmservice.cli", subcommand, *args,
            *(e.format(pod=pod.name) for e in extra),
            "--host", pod.ip, "--port", str(pod.port),
        ]  # fmt: skip

    return build


def echo_command(pod: PodLaunch) -> list[str]:
    """A tiny HTTP server that proves the mechanism (address, identity, credentials)."""
    return [
        sys.executable, "-m", "llmservice.sandbox.runtime.echo",
        "--host", pod.ip, "--port", str(pod.port),
        "--pod", f"{pod.namespace}/{pod.name}", "--component", pod.component,
    ]  # fmt: skip


# component label -> argv builder: the vLLM simulator stands in for vLLM, the router is
# the real one. `echo_command` serves any component for debugging the runtime itself.
COMMANDS: dict[str, Callable[[PodLaunch], list[str]]] = {
    "engine": llmservice_command("sim", "--sim-replica-name", "{pod}"),
    "router": llmservice_command("router"),
}


def component_of(labels: dict[str, str] | None) -> str | None:
    """The component of a Pod the runtime runs, or None for every other Pod."""
    labels = labels or {}
    if labels.get(MANAGED_BY_LABEL) != MANAGED_BY:
        return None
    component = labels.get(COMPONENT_LABEL)
    return component if component in COMMANDS else None
