"""Operator figures on a running sandbox: time to children and to Ready, memory and API load.

    .venv/bin/llmservice sandbox up --no-operator      # or any cluster with the CRD installed
    KUBECONFIG=... .venv/bin/python bench/operator_bench.py --operator-pid PID

Measures, against the operator whose pid is given (it must be running already):
- median of 10 of: create -> every child exists, and create -> Ready=True
  (in the sandbox Pods become ready as soon as their process listens);
- with 100 LLMServices converged (10 serving, 90 scaled to zero: the sandbox has 16 GPUs):
  the operator's resident memory, and API requests per minute: the API server's request
  counters over one minute with the operator running, minus one minute with it stopped
  (SIGSTOP), so other components' traffic cancels out.
A benchmark, not a test: figures vary with the machine; read them as orders of magnitude.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import time
from typing import Any

GROUP_VERSION = "serving.llmservice.dev/v1alpha1"
CHILD_KINDS = (
    "deployments,services,serviceaccounts,roles,rolebindings,poddisruptionbudgets,networkpolicies"
)


def kubectl(*args: str, stdin: str | None = None) -> str:
    return subprocess.run(
        ["kubectl", *args], input=stdin, capture_output=True, text=True, check=True, timeout=120
    ).stdout


def manifest(name: str, namespace: str, engine_replicas: int = 1) -> str:
    return json.dumps({
        "apiVersion": GROUP_VERSION, "kind": "LLMService",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"model": {"name": "Qwen/Qwen2.5-0.5B-Instruct"}, "router": {"replicas": 1},
                 "engine": {"replicas": engine_replicas}},
    })  # fmt: skip


def children_count(name: str, namespace: str) -> int:
    out = kubectl(
        "get",
        CHILD_KINDS,
        "-n",
        namespace,
        "-l",
        f"app.kubernetes.io/instance={name}",
        "-o",
        "name",
    )
    return len(out.split())


def ready(name: str, namespace: str) -> bool:
    out = kubectl("get", "llms", name, "-n", namespace, "-o",
                  'jsonpath={.status.conditions[?(@.type=="Ready")].status}')  # fmt: skip
    return out == "True"


def wait(probe: Any, timeout: float = 180) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if probe():
            return time.monotonic() - start
        time.sleep(0.1)
    raise TimeoutError("benchmark wait timed out")


def expected_children() -> int:
    # Deployments 2, Services 2, ServiceAccount, Role, RoleBinding, router PDB, NetworkPolicy.
    return 9


def timings(namespace: str, runs: int) -> tuple[list[float], list[float]]:
    to_children, to_ready = [], []
    for index in range(runs):
        name = f"bench-{index}"
        start = time.monotonic()
        kubectl("apply", "-f", "-", stdin=manifest(name, namespace))
        wait(lambda n=name: children_count(n, namespace) >= expected_children())
        to_children.append(time.monotonic() - start)
        wait(lambda n=name: ready(n, namespace))
        to_ready.append(time.monotonic() - start)
    return to_children, to_ready


def request_total() -> float:
    total = 0.0
    for line in kubectl("get", "--raw", "/metrics").splitlines():
        if line.startswith("apiserver_request_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def requests_per_minute(pid: int, seconds: float = 60) -> tuple[float, float]:
    before = request_total()
    time.sleep(seconds)
    with_operator = request_total() - before
    os.kill(pid, signal.SIGSTOP)
    try:
        before = request_total()
        time.sleep(seconds)
        without = request_total() - before
    finally:
        os.kill(pid, signal.SIGCONT)
    return with_operator * 60 / seconds, without * 60 / seconds


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--operator-pid", type=int, required=True)
    parser.add_argument("--namespace", default="bench")
    parser.add_argument("--services", type=int, default=100)
    args = parser.parse_args()
    subprocess.run(
        ["kubectl", "create", "namespace", args.namespace], capture_output=True, check=False
    )
    to_children, to_ready = timings(args.namespace, 10)
    print(f"create -> children: median {statistics.median(to_children):.2f} s over 10")
    print(f"create -> Ready:    median {statistics.median(to_ready):.2f} s over 10")
    # The rest scaled to zero: two kwok nodes have 16 GPUs, not 100. Every child but the
    # engine Pods still exists and is watched, reconciled and observed.
    for index in range(10, args.services):
        kubectl("apply", "-f", "-", stdin=manifest(f"bench-{index}", args.namespace, 0))
    last = f"bench-{args.services - 1}"
    wait(lambda: children_count(last, args.namespace) >= expected_children(), timeout=900)
    time.sleep(30)  # let every status settle before measuring a converged operator
    print(f"operator RSS with {args.services} LLMServices: {rss_mib(args.operator_pid):.0f} MiB")
    with_op, without = requests_per_minute(args.operator_pid)
    print(f"API requests/min: {with_op:.0f} with the operator, {without:.0f} without "
          f"(operator's share about {with_op - without:.0f})")  # fmt: skip


if __name__ == "__main__":
    main()
