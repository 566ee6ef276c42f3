"""Real servers on loopback for the conformance suite: vLLM engines, the simulator, the router.

Each is a process started the way the sandbox's runtime starts a Pod's: the engine with the
minimal example's rendered args changed by the runtime's own `adapt_args`, at the runtime's
CPU niceness; the simulator with the rendered args as they are; the router from the
installed llmservice. Every process runs in its own session, so stopping it also stops the
workers vLLM forks.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from llmservice.api.validation import parse_llmservice
from llmservice.render import engine
from llmservice.sandbox.ports import free_port
from llmservice.sandbox.processes import ProcessRecord, log_tail, start, stop_all
from llmservice.sandbox.runtime.vllm_engine import VLLM_NICENESS, adapt_args, vllm_argv, vllm_env
from llmservice.sandbox.versions import VllmLayout

MODEL = "Qwen/Qwen2.5-0.5B-Instruct"
CONTEXT_TOKENS = 262_144
ENGINE_START_SECONDS = 900.0
POLL_SECONDS = 0.05
# vLLM renders /metrics on its API server's event loop, the one that serves the requests:
# scraping it 20 times a second on a busy 2-core machine delays the requests themselves.
METRICS_POLL_SECONDS = 0.2


def minimal_args(**spec_fields: Any) -> list[str]:
    """The engine args the operator renders for examples/minimal.yaml with more spec fields
    (a `model` field replaces the example's whole `model`)."""
    document = {
        "apiVersion": "serving.llmservice.dev/v1alpha1",
        "kind": "LLMService",
        "metadata": {"name": "chat", "namespace": "default"},
        "spec": {"model": {"name": MODEL}, **spec_fields},
    }
    return engine.engine_args(parse_llmservice(document))


def wait_for(
    condition: Callable[[], Any], timeout: float, what: str, interval: float = POLL_SECONDS
) -> Any:
    """Poll until `condition()` is truthy; its value, or AssertionError once a poll that
    began after the deadline found it false.

    The last poll always begins after the deadline: a poll can itself take longer than
    the timeout on a busy machine (before the engines ran at the lowest CPU priority,
    processes outside vLLM stalled for up to a minute at times while it generated on two
    cores), and a poll that began before the deadline says nothing of the state after it."""
    deadline = time.monotonic() + timeout
    while True:
        expired = time.monotonic() > deadline
        value = condition()
        if value:
            return value
        if expired:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


@dataclass
class Server:
    """One process serving HTTP at `url`."""

    name: str
    url: str
    process: ProcessRecord

    def healthy(self, path: str = "/health") -> bool:
        if not self.process.alive():
            tail = "\n".join(log_tail(self.process.log, 30))
            raise AssertionError(f"{self.name} exited:\n{tail}")
        try:
            return httpx.get(self.url + path, timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_healthy(self, timeout: float, path: str = "/health") -> None:
        wait_for(lambda: self.healthy(path), timeout, f"{self.name} {path}")

    def metrics(self) -> dict[str, float]:
        """Each sample name of /metrics with its values summed over their labels."""
        # A long timeout: on a busy machine this process itself can stall (for up to a
        # minute before the engines ran at the lowest CPU priority), and a read deadline
        # that passed meanwhile fails an answer that is there.
        text = httpx.get(self.url + "/metrics", timeout=120.0).text
        sums: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                sums[sample.name] = sums.get(sample.name, 0.0) + sample.value
        return sums

    def stop(self) -> None:
        stop_all([self.process])
        # vLLM's engine core and worker are this process's children, in its session.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)


def start_engine(layout: VllmLayout, ip: str, rendered: Sequence[str], logs: Path) -> Server:
    """The real vLLM with `rendered` args, changed as the sandbox's runtime changes them."""
    port = free_port()
    args, _changes = adapt_args(rendered, str(layout.model), ip, port)
    env = dict(os.environ) | vllm_env(layout) | {"VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}
    name = f"vllm-{ip}"
    process = start(name, vllm_argv(layout, args), logs / f"{name}.log", env, VLLM_NICENESS)
    return Server(name, f"http://{ip}:{port}", process)


def start_simulator(ip: str, rendered: Sequence[str], logs: Path) -> Server:
    """`llmservice sim` with the rendered args as they are, bound to `ip`."""
    port = free_port()
    argv = [sys.executable, "-m", "llmservice.cli", "sim", *rendered, "--host", ip]
    argv += ["--port", str(port), "--sim-replica-name", "sim"]
    process = start("sim", argv, logs / "sim.log")
    return Server("sim", f"http://{ip}:{port}", process)


def start_router(
    ip: str, backends: Sequence[Server], logs: Path, extra: Sequence[str] = ()
) -> Server:
    """The router in front of `backends`, keeping every session on its replica however
    unequal the loads (the queueing tests load one replica only, on purpose)."""
    port = free_port()
    argv = [sys.executable, "-m", "llmservice.cli", "router", "--served-model-name", MODEL]
    argv += ["--static-backends", ",".join(b.url for b in backends), "--load-bound", "1000"]
    argv += ["--host", ip, "--port", str(port), *extra]
    process = start("router", argv, logs / "router.log")
    return Server("router", f"http://{ip}:{port}", process)
