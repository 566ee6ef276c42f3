"""`llmservice sandbox build | up | down | status | env`.

`up` brings up the control plane, then (unless `--no-operator`) installs the operator from
`deploy/`, applies `examples/minimal.yaml`, waits for it to be Ready, sends requests through
its router and shows `kubectl get llms` with live tokens per second (`--no-traffic` stops
after applying the example). `--with-prometheus` also runs a real Prometheus that scrapes
the engines, routers, the operator and the fake GPUs (see `prometheus`).

`build` builds every binary the tests use, Prometheus and promtool included.

The Pods' processes run llmservice as it ships: `up` builds the wheel from the checkout and
installs it with no extras into a virtualenv cached by the wheel's hash (see `product`).

Faults a user can fix surface as one line on stderr and exit code 1; an interrupted `up`
tears down what it started and exits 130.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from llmservice.sandbox import stack
from llmservice.sandbox.build import Builder
from llmservice.sandbox.cluster import Sandbox
from llmservice.sandbox.errors import SandboxError
from llmservice.sandbox.layout import (
    DEFAULT_POD_CIDR,
    ENGINES,
    GPU_RESOURCE,
    Settings,
    default_directory,
)
from llmservice.sandbox.progress import Progress
from llmservice.sandbox.prometheus import start_prometheus
from llmservice.sandbox.report import describe_status, usage
from llmservice.sandbox.versions import default_layout, default_vllm_layout
from llmservice.sandbox.vllm_install import VllmInstaller


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="llmservice sandbox",
        description="A local Kubernetes control plane with simulated GPU nodes.",
    )
    root.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="sandbox directory (default: $LLMSERVICE_SANDBOX_DIR or ~/.cache/llmservice/sandbox)",
    )
    commands = root.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="build and cache the binaries (once per version)")
    build.add_argument(
        "--engine",
        choices=ENGINES,
        default="sim",
        help="also install the real vLLM (CPU build) and its tiny model with `vllm`",
    )
    up = commands.add_parser("up", help="start the sandbox (builds first if needed)")
    up.add_argument("--nodes", type=int, default=Settings.nodes, help="kwok nodes (default 2)")
    up.add_argument(
        "--gpus-per-node", type=int, default=Settings.gpus_per_node, help=f"{GPU_RESOURCE} each"
    )
    up.add_argument("--pod-cidr", default=DEFAULT_POD_CIDR, help="loopback range for Pod IPs")
    up.add_argument("--apiserver-port", type=int, default=0, help="fixed API server port")
    up.add_argument("--no-runtime", action="store_true", help="do not start the local runtime")
    up.add_argument(
        "--engine",
        choices=ENGINES,
        default="sim",
        help="what engine Pods run: the vLLM simulator (default) or the real vLLM on the CPU"
        " serving a tiny model (installed on first use, several GB)",
    )
    up.add_argument(
        "--no-operator",
        action="store_true",
        help="a bare cluster: do not install deploy/ nor apply the example",
    )
    up.add_argument(
        "--no-traffic",
        action="store_true",
        help="do not wait for the example to be Ready, send requests through its router and "
        "show its tokens per second",
    )
    up.add_argument(
        "--with-prometheus",
        action="store_true",
        help="also run Prometheus (built on first use), scraping the engines, routers, the "
        "operator and the GPUs as the rendered ServiceMonitors would",
    )
    commands.add_parser("down", help="stop every sandbox process and remove its files")
    commands.add_parser("status", help="show the processes, nodes and Pod processes")
    commands.add_parser("env", help="print `export KUBECONFIG=...` for eval")
    return root


def run(args: argparse.Namespace) -> int:
    directory = args.dir or default_directory()
    progress = Progress()
    if args.command == "build":
        Builder(default_layout(), progress).ensure(prometheus=True)
        if args.engine == "vllm":
            VllmInstaller(default_vllm_layout(), progress).ensure()
        return 0
    if args.command == "up":
        settings = Settings(
            nodes=args.nodes,
            gpus_per_node=args.gpus_per_node,
            pod_cidr=args.pod_cidr,
            apiserver_port=args.apiserver_port,
            runtime=not args.no_runtime,
            engine=args.engine,
        )
        with_operator = not args.no_operator
        traffic = with_operator and not args.no_runtime and not args.no_traffic
        if with_operator:
            stack.require_kubectl()
            stack.require_source()
        sandbox = Sandbox(directory, settings, progress=progress)
        if args.with_prometheus:
            Builder(sandbox.binaries, progress).ensure(prometheus=True)
        state = sandbox.up()
        prometheus = start_prometheus(sandbox, progress) if args.with_prometheus else None
        if with_operator:
            stack.install_operator(sandbox, progress)
            stack.apply_example(sandbox, progress)
        print(usage(sandbox, state, progress.elapsed(), with_operator))
        if prometheus is not None:
            print(f"  Prometheus: {prometheus.url} (API only: /api/v1/query, /api/v1/targets)")
        if traffic:
            print()
            real = args.engine == "vllm"
            timeout = stack.REAL_ENGINE_READY_TIMEOUT if real else stack.READY_TIMEOUT
            shown = stack.send_traffic_and_show_throughput(sandbox, progress, ready_timeout=timeout)
            print(shown, end="")
        return 0
    sandbox = Sandbox(directory, progress=progress)
    if args.command == "down":
        found = sandbox.down()
        print("Sandbox stopped and its files removed." if found else "No sandbox was running.")
        return 0
    if args.command == "status":
        text, healthy = describe_status(sandbox)
        print(text)
        return 0 if healthy else 1
    if args.command == "env":
        if sandbox.load() is None:
            raise SandboxError("no sandbox is running", "start one with `llmservice sandbox up`")
        print(f"export KUBECONFIG={sandbox.kubeconfig}")
        return 0
    raise AssertionError(args.command)


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    try:
        return run(args)
    except SandboxError as exc:
        print(f"llmservice sandbox: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("llmservice sandbox: interrupted", file=sys.stderr)
        return 130
