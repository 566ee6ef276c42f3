"""Which process the runtime starts for which Pod: one small table.

Only the project's own workloads get a process: the engine and router Pods the operator
renders (`app.kubernetes.io/managed-by: llmservice-operator`) and the operator's own Pod
from `deploy/` (`app.kubernetes.io/name: llmservice-operator`). `WORKLOADS` maps each
`app.kubernetes.io/component` to the labels its Pods must also carry, the port it serves
when the container declares none, and an argv builder. A builder turns the Pod's first
container (its args, already with mount paths rewritten to local files) into an argv bound
to the Pod IP and port. `llmservice` runs from the installed product (its wheel in a
virtualenv without extras), as in the image, never from the development virtualenv.

Switching a component to another program is a one-line change of that table;
`workloads(engine="vllm")` is the table with the real vLLM for engine Pods (see
`vllm_engine` for the few flags it changes, each logged).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from llmservice.sandbox.product import Product
from llmservice.sandbox.runtime.vllm_engine import VLLM_NICENESS, adapt_args, vllm_argv, vllm_env
from llmservice.sandbox.versions import VllmLayout, default_vllm_layout

log = logging.getLogger("llmservice.sandbox.runtime")

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "llmservice-operator"
NAME_LABEL = "app.kubernetes.io/name"
OPERATOR_NAME = "llmservice-operator"
COMPONENT_LABEL = "app.kubernetes.io/component"


@dataclass(frozen=True)
class PodLaunch:
    """What a command builder gets: the Pod's identity, address, container args, and the
    installed product that runs `llmservice`."""

    namespace: str
    name: str
    component: str
    ip: str
    port: int
    args: Sequence[str]
    product: Product


def llmservice_command(
    subcommand: str,
    *extra: str,
    host_flag: str = "--host",
    port_flag: str = "--port",
) -> Callable[[PodLaunch], list[str]]:
    """`llmservice SUBCOMMAND <container args> [extra] HOST_FLAG IP PORT_FLAG PORT`.

    The container's args come first so that the Pod-IP binding added last wins: argparse
    keeps the last value of a repeated option, and the image's own `--host 0.0.0.0` means
    nothing on this machine. A Pod whose command is `llmservice` carries the subcommand as
    its first arg; it is dropped, since it is already there. `extra` may name `{pod}` and
    `{ip}`.
    """

    def build(pod: PodLaunch) -> list[str]:
        args = list(pod.args)
        if args[:1] == [subcommand]:
            args = args[1:]
        return pod.product.command(
            subcommand, *args,
            *(e.format(pod=pod.name, ip=pod.ip) for e in extra),
            host_flag, pod.ip, port_flag, str(pod.port),
        )  # fmt: skip

    return build


def echo_command(pod: PodLaunch) -> list[str]:
    """A tiny HTTP server that proves the mechanism (address, identity, credentials).

    Part of the runtime, not of the product: it runs on the runtime's own interpreter.
    """
    return [
        sys.executable, "-m", "llmservice.sandbox.runtime.echo",
        "--host", pod.ip, "--port", str(pod.port),
        "--pod", f"{pod.namespace}/{pod.name}", "--component", pod.component,
    ]  # fmt: skip


def vllm_command(layout: VllmLayout) -> Callable[[PodLaunch], list[str]]:
    """The real vLLM serving the tiny model, with the Pod's args changed as little as it can."""

    def build(pod: PodLaunch) -> list[str]:
        args, changes = adapt_args(pod.args, str(layout.model), pod.ip, pod.port)
        log.info(
            "Engine Pod %s/%s runs vLLM %s; flags changed: %s",
            pod.namespace, pod.name, layout.version, "; ".join(map(str, changes)),
        )  # fmt: skip
        return vllm_argv(layout, args)

    return build


@dataclass(frozen=True)
class Workload:
    """One row of the table: which Pods, which port by default, which command, what the
    process's environment gets on top of the Pod's, and its CPU niceness."""

    labels: Mapping[str, str]
    default_port: int
    command: Callable[[PodLaunch], list[str]]
    env: Mapping[str, str] = field(default_factory=dict)
    niceness: int = 0


_RENDERED = {MANAGED_BY_LABEL: MANAGED_BY}

# component label -> workload. The vLLM simulator stands in for vLLM; the router and the
# operator are the real ones. The operator's Pod IP and first port become kopf's liveness
# endpoint, and its metrics endpoint (the port its args name) binds the Pod IP too.
# `echo_command` serves any component for debugging the runtime itself.
WORKLOADS: dict[str, Workload] = {
    "engine": Workload(_RENDERED, 8000, llmservice_command("sim", "--sim-replica-name", "{pod}")),
    "router": Workload(_RENDERED, 8080, llmservice_command("router")),
    "operator": Workload(
        {NAME_LABEL: OPERATOR_NAME},
        8081,
        llmservice_command(
            "operator",
            "--metrics-host",
            "{ip}",
            host_flag="--liveness-host",
            port_flag="--liveness-port",
        ),
    ),
}


def workloads(engine: str = "sim", vllm: VllmLayout | None = None) -> dict[str, Workload]:
    """The table, with engine Pods running the simulator or the real vLLM."""
    if engine == "sim":
        return WORKLOADS
    layout = vllm or default_vllm_layout()
    real = Workload(_RENDERED, 8000, vllm_command(layout), vllm_env(layout), VLLM_NICENESS)
    return WORKLOADS | {"engine": real}


# One list call finds every candidate; `component_of` then checks the row's other labels.
POD_SELECTOR = f"{COMPONENT_LABEL} in ({','.join(sorted(WORKLOADS))})"


def component_of(labels: Mapping[str, str] | None) -> str | None:
    """The component of a Pod the runtime runs, or None for every other Pod."""
    labels = labels or {}
    component = labels.get(COMPONENT_LABEL)
    workload = WORKLOADS.get(component or "")
    if workload is None or not workload.labels.items() <= labels.items():
        return None
    return component
