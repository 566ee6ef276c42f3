"""Operator figures on a running sandbox: time to children and to Ready, memory and API load.

    .venv/bin/llmservice sandbox up --no-operator      # or any cluster with the CRD installed
    KUBECONFIG=... .venv/bin/python bench/operator_bench.py --operator-pid PID

Measures, against the operator whose pid is given (it must be running already):
- median of 10 of: create -> every child exists, and create -> Ready=True
  (in the sandbox a Pod is ready once its process passes its readiness probe);
- with 100 LLMServices converged (10 serving, 90 scaled to zero: the sandbox has 16 GPUs):
  the operator's resident memory, and its API requests over one minute, counted by verb
  from the sandbox API server's audit log for the operator's user alone (a watch counts
  once, when it is opened).
A benchmark, not a test: figures vary with the machine; read them as orders of magnitude.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from llmservice.sandbox import audit
from llmservice.sandbox.layout import SandboxDir, default_directory

OPERATOR_USER = "system:serviceaccount:llmservice-system:llmservice-operator"

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


def requests_in_one_minute(log: Path, user: str) -> Counter[str]:
    start = datetime.now(UTC)
    time.sleep(60)
    end = datetime.now(UTC)
    time.sleep(2)  # the audit log is written in batches
    return audit.by_verb(audit.read(log), user, start, end)


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
    parser.add_argument(
        "--audit-log", type=Path, default=SandboxDir(default_directory()).audit_log,
        help="the API server's audit log (default: the sandbox's)",
    )  # fmt: skip
    parser.add_argument(
        "--operator-user", default=OPERATOR_USER,
        help="the operator's user name in the audit log (default: its ServiceAccount's)",
    )  # fmt: skip
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
    verbs = requests_in_one_minute(args.audit_log, args.operator_user)
    writes = sum(n for verb, n in verbs.items() if verb in audit.WRITE_VERBS)
    detail = ", ".join(f"{verb} {n}" for verb, n in verbs.most_common())
    print(f"operator API requests in one minute: {sum(verbs.values())} ({detail}); "
          f"writes {writes}")  # fmt: skip


if __name__ == "__main__":
    main()
