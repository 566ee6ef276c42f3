"""Autoscaling on the sandbox: a step load, and the first requests after scale to zero.

The bench brings up its own sandbox (control plane, kwok GPU nodes, the local runtime that
runs the Pods' processes on loopback), installs the CRD, runs the operator beside it (with
its default `--autoscale-interval` of 3 s unless told otherwise), and tears all of it down
at the end. Two scenarios:

1. **Step load.** One LLMService with `engine.autoscaling` (minReplicas 1, in-flight
   requests per replica as the metric, target `--target`) in front of simulator replicas
   slowed by `--sim-time-scale`, so a request stays in flight for seconds. Idle for
   `--idle` seconds, then `3 x --target` clients each sending streamed chat requests back
   to back (a closed loop: three times what one replica is meant to carry, all the time)
   for `--step` seconds, then idle until the engine is back at one replica. Reported: time
   from the step to the scale decision and to the added replicas being Ready, requests
   that failed (a status other than 200, or a stream without its `[DONE]`), the
   replica-seconds the engine Pods existed against an ideal that follows the load exactly,
   and every scaling step the operator recorded as an Event.
2. **From zero.** A second LLMService with minReplicas 0 idles to zero; then one streamed
   request through a router Pod, and later (after it idled to zero again) `--burst`
   concurrent ones spread over the router Pods. Reported: each burst's time to first
   token against the engine's own start, measured two ways: from the scale decision (the
   engine Deployment's replicas leaving 0) to the engine Pod Ready, and from the
   simulator's process start (from /proc) to its /health first answering (polled here).

Times are taken here, as this process observes them through watches, so they include the
API server's and the runtime's delays, as a user's would. Figures go to stdout as Markdown.
About 5 minutes with the defaults:

    .venv/bin/python -m bench.autoscale_bench --dir /tmp/autoscale-bench \\
        --pod-cidr 127.135.0.0/16
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import math
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import yaml
from kubernetes import client, watch

from llmservice.sandbox.apiclient import api_client
from llmservice.sandbox.cluster import Sandbox
from llmservice.sandbox.layout import Settings
from llmservice.sandbox.ports import free_port
from llmservice.sandbox.product import Product, ensure_product
from llmservice.sandbox.progress import Progress
from llmservice.sandbox.runtime.records import load_all
from llmservice.sandbox.versions import default_layout

ROOT = Path(__file__).resolve().parents[1]
CRD_FILE = ROOT / "crds" / "llmservices.serving.llmservice.dev.yaml"
GROUP, VERSION, PLURAL = "serving.llmservice.dev", "v1alpha1", "llmservices"
MODEL = "Qwen/Qwen2.5-0.5B-Instruct"
ROUTER_PORT = 8080
ENGINE = "app.kubernetes.io/component=engine"
ROUTER = "app.kubernetes.io/component=router"
FIRST_TOKEN = re.compile(rb'"content":\s*"[^"]')
T = TypeVar("T")


def wait_for(probe: Callable[[], T | None], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.1)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# -- the cluster and the operator -------------------------------------------------------------


def install_crd(api: client.ApiClient) -> None:
    document = yaml.safe_load(CRD_FILE.read_text(encoding="utf-8"))
    extensions = client.ApiextensionsV1Api(api)
    extensions.create_custom_resource_definition(document)

    def established() -> bool:
        crd = extensions.read_custom_resource_definition(document["metadata"]["name"])
        conditions = (crd.status and crd.status.conditions) or []
        return any(c.type == "Established" and c.status == "True" for c in conditions)

    wait_for(established, 60, "the CRD to be Established")


@contextlib.contextmanager
def running_operator(sandbox: Sandbox, product: Product, interval: float) -> Iterator[None]:
    """`llmservice operator` as its own process, with the sandbox's admin kubeconfig."""
    port = free_port()
    env = {**os.environ, "KUBECONFIG": str(sandbox.kubeconfig)}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    argv = product.command("operator", "--liveness-host", "127.0.0.1", "--liveness-port",
                           str(port), "--autoscale-interval", f"{interval:g}")  # fmt: skip
    with (sandbox.dir.root / "operator.log").open("ab") as log:
        process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:

        def alive() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"the operator exited with {process.returncode}")
            with contextlib.suppress(OSError):
                url = f"http://127.0.0.1:{port}/healthz"
                with urllib.request.urlopen(url, timeout=2) as response:
                    return bool(response.status == 200)
            return False

        wait_for(alive, 60, "the operator's liveness endpoint")
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def create_service(api: client.ApiClient, name: str, engine: dict[str, Any]) -> str:
    """A fresh namespace holding one LLMService `name`; the namespace."""
    namespace = f"bench-{uuid.uuid4().hex[:6]}"
    client.CoreV1Api(api).create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace))
    )
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "LLMService",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"model": {"name": MODEL}, "engine": engine}}  # fmt: skip
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, body
    )
    return namespace


def ready(api: client.ApiClient, namespace: str, name: str) -> bool:
    obj: dict[str, Any] = client.CustomObjectsApi(api).get_namespaced_custom_object(  # type: ignore[assignment]
        GROUP, VERSION, namespace, PLURAL, name
    )
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def router_ips(api: client.ApiClient, namespace: str) -> list[str]:
    pods = client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=ROUTER).items
    ips = []
    for pod in pods:
        status = pod.status
        if status is None or not status.pod_ip:
            continue
        if any(c.type == "Ready" and c.status == "True" for c in status.conditions or []):
            ips.append(status.pod_ip)
    return sorted(ips)


def scaling_events(
    api: client.ApiClient, namespace: str, name: str
) -> list[tuple[float, str, str]]:
    """The operator's Normal Events about the LLMService other than Ready: (time, reason, note)."""
    found = (
        client.EventsV1Api(api)
        .list_namespaced_event(
            namespace, field_selector=f"regarding.name={name},regarding.kind=LLMService"
        )
        .items
    )
    return sorted(
        (e.event_time.timestamp(), str(e.reason), e.note or "")
        for e in found
        if e.type == "Normal" and e.reason != "Ready"
    )


# -- what happens to the engine, as watched from here ---------------------------------------


@dataclass
class PodTimes:
    uid: str
    created: float
    ready: float | None = None
    gone: float | None = None
    process_start: float | None = None  # the simulator process, from /proc
    health: float | None = None  # its /health first answering


@dataclass
class EngineWatch:
    """Engine Pods and the engine Deployment's replicas over time, from two watches."""

    api: client.ApiClient
    namespace: str
    runtime_dir: Path
    pods: dict[str, PodTimes] = field(default_factory=dict)
    replicas: list[tuple[float, int]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> EngineWatch:
        for target in (self._watch_pods, self._watch_deployment, self._poll_health):
            threading.Thread(target=target, daemon=True).start()
        return self

    def _stream(self, list_call: Any, on_event: Callable[[str, Any], None], **kw: Any) -> None:
        # Short server-side timeouts, resumed from the last version seen, so the thread
        # notices `stop` within seconds and misses no event in between.
        w = watch.Watch()  # type: ignore[no-untyped-call]
        version = None
        while not self.stop.is_set():
            try:
                for event in w.stream(list_call, self.namespace, timeout_seconds=5,  # type: ignore[no-untyped-call]
                                      resource_version=version, **kw):  # fmt: skip
                    on_event(event["type"], event["object"])
                    version = event["object"].metadata.resource_version
            except client.ApiException as exc:
                if exc.status != 410:  # 410: the version expired, list again
                    raise
                version = None
            except Exception:
                if self.stop.is_set():  # the sandbox is going down
                    return
                raise

    def _watch_pods(self) -> None:
        core = client.CoreV1Api(self.api)
        self._stream(core.list_namespaced_pod, self._pod_event, label_selector=ENGINE)

    def _pod_event(self, kind: str, pod: Any) -> None:
        now = time.time()
        with self.lock:
            times = self.pods.setdefault(pod.metadata.name, PodTimes(pod.metadata.uid, now))
            is_ready = any(
                c.type == "Ready" and c.status == "True" for c in pod.status.conditions or []
            )
            if is_ready and times.ready is None:
                times.ready = now
            if kind == "DELETED" and times.gone is None:
                times.gone = now

    def _watch_deployment(self) -> None:
        apps = client.AppsV1Api(self.api)
        self._stream(apps.list_namespaced_deployment, self._deployment_event,
                     label_selector=ENGINE)  # fmt: skip

    def _deployment_event(self, kind: str, deployment: Any) -> None:
        count = deployment.spec.replicas
        with self.lock:
            if kind != "DELETED" and (not self.replicas or self.replicas[-1][1] != count):
                self.replicas.append((time.time(), count))

    def _poll_health(self) -> None:
        """Each new simulator's process start and its /health first answering."""
        ticks = os.sysconf("SC_CLK_TCK")
        boot = boot_time()
        while not self.stop.is_set():
            records = {
                uid: r for uid, r in load_all(self.runtime_dir).items() if r.component == "engine"
            }
            with self.lock:
                waiting = [t for t in self.pods.values() if t.health is None and t.uid in records]
            for times in waiting:
                record = records[times.uid]
                times.process_start = boot + record.process.start_time / ticks
                with contextlib.suppress(OSError):
                    url = f"http://{record.ip}:{record.port}/health"
                    with urllib.request.urlopen(url, timeout=1) as response:
                        if response.status == 200:
                            times.health = time.time()
            time.sleep(0.02)

    def count_at(self, at: float) -> int:
        """Engine Pods existing (scheduled, holding a GPU) at `at`."""
        with self.lock:
            return sum(
                1 for t in self.pods.values() if t.created <= at and (t.gone is None or t.gone > at)
            )

    def existing(self) -> int:
        with self.lock:
            return sum(1 for t in self.pods.values() if t.gone is None)

    def desired(self) -> int | None:
        with self.lock:
            return self.replicas[-1][1] if self.replicas else None


def boot_time() -> float:
    for line in Path("/proc/stat").read_text(encoding="ascii").splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    raise RuntimeError("no btime in /proc/stat")


# -- requests ------------------------------------------------------------------------------


@dataclass
class Outcome:
    started: float
    status: int = 0
    ttft: float | None = None
    ended: float = 0.0
    complete: bool = False  # the stream ended with [DONE]

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.complete


async def chat(session: aiohttp.ClientSession, ip: str, max_tokens: int) -> Outcome:
    prompt = f"Count to ten. {uuid.uuid4().hex}"  # distinct, so no prefix cache hits
    body = {"model": MODEL, "stream": True, "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": prompt}]}  # fmt: skip
    outcome = Outcome(time.time())
    try:
        async with session.post(f"http://{ip}:{ROUTER_PORT}/v1/chat/completions", json=body) as r:
            outcome.status = r.status
            seen = b""
            async for chunk in r.content.iter_any():
                seen += chunk
                # The first token, not the first byte: an engine sends the role at once.
                if outcome.ttft is None and FIRST_TOKEN.search(seen):
                    outcome.ttft = time.time() - outcome.started
            outcome.complete = seen.rstrip().endswith(b"data: [DONE]")
    except (TimeoutError, aiohttp.ClientError):
        outcome.status = outcome.status or -1
    outcome.ended = time.time()
    return outcome


# -- 1. step load --------------------------------------------------------------------------


@dataclass
class StepResult:
    target: float
    clients: int
    step_at: float
    stop_at: float
    window: tuple[float, float]
    outcomes: list[Outcome]
    samples: list[tuple[float, int]]  # (time, requests in flight from the clients)
    watch: EngineWatch
    events: list[tuple[float, str, str]]


async def closed_loop(
    ips: list[str], clients: int, seconds: float, max_tokens: int,
    samples: list[tuple[float, int]],
) -> list[Outcome]:  # fmt: skip
    outcomes: list[Outcome] = []
    in_flight = [0]
    end = time.monotonic() + seconds

    async def one_client(index: int, session: aiohttp.ClientSession) -> None:
        while time.monotonic() < end:
            in_flight[0] += 1
            outcomes.append(await chat(session, ips[index % len(ips)], max_tokens))
            in_flight[0] -= 1

    async def sample() -> None:
        while True:
            samples.append((time.time(), in_flight[0]))
            await asyncio.sleep(0.25)

    timeout = aiohttp.ClientTimeout(total=300)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        sampler = asyncio.create_task(sample())
        await asyncio.gather(*(one_client(i, session) for i in range(clients)))
        sampler.cancel()
    samples.append((time.time(), 0))
    return outcomes


def idle(samples: list[tuple[float, int]], until: Callable[[], bool], timeout: float) -> None:
    """No requests until `until()` holds, sampling the (zero) load."""
    deadline = time.monotonic() + timeout
    while not until():
        if time.monotonic() > deadline:
            raise TimeoutError("the idle phase did not end in time")
        samples.append((time.time(), 0))
        time.sleep(0.25)
    samples.append((time.time(), 0))


def step_load(api: client.ApiClient, sandbox: Sandbox, args: argparse.Namespace) -> StepResult:
    autoscaling = {"enabled": True, "minReplicas": 1, "maxReplicas": args.max_replicas,
                   "targetPerReplica": args.target,
                   "scaleDownStabilizationSeconds": args.down_window}  # fmt: skip
    engine = {"extraArgs": [f"--sim-time-scale={args.sim_time_scale:g}"],
              "autoscaling": autoscaling}  # fmt: skip
    namespace = create_service(api, "step", engine)
    engines = EngineWatch(api, namespace, sandbox.dir.runtime).start()
    wait_for(lambda: ready(api, namespace, "step"), 180, "the LLMService to be Ready")
    ips = wait_for(lambda: router_ips(api, namespace), 60, "ready router Pods")

    async def warm_up() -> Outcome:
        async with aiohttp.ClientSession() as session:
            return await chat(session, ips[0], 4)

    first = asyncio.run(warm_up())
    if not first.ok:
        raise RuntimeError(f"the warm-up request failed with {first.status}")
    samples: list[tuple[float, int]] = []
    start = time.time()
    say(f"step load: idle {args.idle:g} s")
    idle(samples, lambda: time.time() - start >= args.idle, args.idle + 10)
    clients = math.ceil(3 * args.target)
    say(f"step load: {clients} clients for {args.step:g} s")
    step_at = time.time()
    outcomes = asyncio.run(closed_loop(ips, clients, args.step, args.max_tokens, samples))
    stop_at = time.time()
    say(f"load average after the step: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    say("step load: idle until back at one replica")
    idle(samples, lambda: engines.desired() == 1 and engines.existing() == 1,
         args.down_window + 180)  # fmt: skip
    end = time.time()
    engines.stop.set()
    return StepResult(args.target, clients, step_at, stop_at, (start, end), outcomes, samples,
                      engines, scaling_events(api, namespace, "step"))  # fmt: skip


def replica_seconds(result: StepResult) -> tuple[float, float]:
    """(used, ideal) over the run, integrated over the load samples.

    Used: engine Pods that existed (from creation to gone, holding a GPU). Ideal:
    max(minReplicas, ceil(requests in flight / target)), following the load exactly.
    """
    used = ideal = 0.0
    samples = result.samples
    for (at, load), (after, _) in itertools.pairwise(samples):
        dt = after - at
        used += result.watch.count_at(at) * dt
        ideal += max(1, math.ceil(load / result.target)) * dt
    return used, ideal


def report_step(result: StepResult, args: argparse.Namespace) -> None:
    watch_ = result.watch
    decisions = [(at, n) for at, n in watch_.replicas if at >= result.step_at]
    first_up = decisions[0] if decisions else None
    added = [t for t in watch_.pods.values() if t.created >= result.step_at and t.ready]
    first_wave = [t for t in added if first_up and t.created - first_up[0] < 5.0]
    failed = [o for o in result.outcomes if not o.ok]
    used, ideal = replica_seconds(result)
    start, end = result.window
    during = [n for at, n in result.samples if result.step_at <= at < result.stop_at]
    load_mean = sum(during) / max(1, len(during))
    ttfts = sorted(o.ttft for o in result.outcomes if o.ttft is not None)
    print(f"\n### Step load: idle {args.idle:g} s, {result.clients} clients for {args.step:g} s"
          f" (target {result.target:g} in flight per replica), idle until back at 1\n")  # fmt: skip
    print("| measure | result |")
    print("|---|---|")
    if first_up is not None:
        print(f"| step -> scale decision (Deployment replicas {watch_.replicas[0][1]}"
              f" -> {first_up[1]}) | {first_up[0] - result.step_at:.1f} s |")  # fmt: skip
    if first_wave:
        readies = sorted(t.ready - result.step_at for t in first_wave if t.ready)
        print(f"| step -> added replicas Ready ({len(first_wave)} Pods) | first {readies[0]:.1f} s,"
              f" last {readies[-1]:.1f} s |")  # fmt: skip
    print(f"| requests (all streamed, {args.max_tokens} tokens) | {len(result.outcomes)} |")
    print(f"| requests failed | {len(failed)} |")
    print(f"| in flight during the step (mean of samples) | {load_mean:.1f} |")
    if ttfts:
        print(f"| time to first token p50 / max | {ttfts[len(ttfts) // 2]:.2f} s /"
              f" {ttfts[-1]:.2f} s |")  # fmt: skip
    print(f"| engine replica-seconds used over the run ({end - start:.0f} s) | {used:.0f} |")
    print(f"| ideal replica-seconds, max(1, ceil(in flight / {result.target:g})) | {ideal:.0f} |")
    print(f"| used / ideal | {used / ideal:.2f} |")
    print(f"| scaling Events | {len(result.events)} |")
    path = " -> ".join(str(n) for _, n in watch_.replicas)
    print(f"| engine Deployment replicas over the run | {path} |")
    print("\nScaling Events (seconds from the step):\n")
    for at, reason, note in result.events:
        print(f"- {at - result.step_at:+.1f} s {reason}: {note}")


# -- 2. from zero --------------------------------------------------------------------------


@dataclass
class ColdStart:
    requests: int
    sent: float
    outcomes: list[Outcome]
    decision: float | None
    pods: list[PodTimes]


def from_zero(api: client.ApiClient, sandbox: Sandbox, args: argparse.Namespace) -> list[ColdStart]:
    autoscaling = {"enabled": True, "minReplicas": 0, "maxReplicas": 2,
                   "scaleToZeroAfterIdleSeconds": 10, "scaleDownStabilizationSeconds": 30,
                   "coldStartTimeoutSeconds": 120}  # fmt: skip
    namespace = create_service(api, "cold", {"autoscaling": autoscaling})
    wait_for(lambda: ready(api, namespace, "cold"), 180, "the LLMService to be Ready")
    ips = wait_for(lambda: router_ips(api, namespace), 60, "ready router Pods")
    return [cold_start(api, sandbox, namespace, ips, count) for count in (1, args.burst)]


def cold_start(
    api: client.ApiClient, sandbox: Sandbox, namespace: str, ips: list[str], count: int
) -> ColdStart:
    """`count` concurrent requests once the engine is at zero, and what the engine did."""
    engines = EngineWatch(api, namespace, sandbox.dir.runtime).start()
    # At zero: the Deployment at 0 and every engine Pod gone (its GPU free).
    wait_for(lambda: engines.desired() == 0 and engines.existing() == 0, 120, "the engine at zero")
    say(f"from zero: {count} request(s)")
    sent = time.time()

    async def burst() -> list[Outcome]:
        timeout = aiohttp.ClientTimeout(total=300)
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            return list(
                await asyncio.gather(*(chat(session, ips[i % len(ips)], 16) for i in range(count)))
            )

    outcomes = asyncio.run(burst())
    woken = [t for t in engines.pods.values() if t.created >= sent]
    wait_for(lambda: all(t.health for t in woken), 10, "the health poller")
    engines.stop.set()
    decision = next((at for at, n in engines.replicas if at >= sent and n > 0), None)
    return ColdStart(count, sent, outcomes, decision, woken)


def report_cold(runs: list[ColdStart]) -> None:
    print("\n### From zero: streamed requests through the router Pods while no engine runs\n")
    print("| requests | answered 200 | TTFT first / last | request -> scale decision "
          "| engine start: decision -> Pod Ready | simulator process start -> /health "
          "| TTFT first - engine start (target <= 5 s) |")  # fmt: skip
    print("|---:|---:|---|---:|---|---|---:|")
    for run in runs:
        ttfts = sorted(o.ttft for o in run.outcomes if o.ttft is not None)
        ok = sum(o.ok for o in run.outcomes)
        pods = sorted(run.pods, key=lambda t: t.created)
        starts = [t.ready - (run.decision or t.created) for t in pods if t.ready]
        health = [t.health - t.process_start for t in pods if t.health and t.process_start]
        margin = f"{ttfts[0] - starts[0]:+.2f} s" if ttfts and starts else "-"
        decision = f"{run.decision - run.sent:.1f} s" if run.decision else "-"
        first_last = f"{ttfts[0]:.2f} s / {ttfts[-1]:.2f} s" if ttfts else "-"
        print(f"| {run.requests} | {ok} | {first_last} | {decision} "
              f"| {', '.join(f'{r:.1f} s' for r in starts)} "
              f"| {', '.join(f'{h:.1f} s' for h in health)} | {margin} |")  # fmt: skip


# -- main ----------------------------------------------------------------------------------


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--dir", type=Path, help="the sandbox's directory, absent or empty"
                   " (default: a new temporary one); removed at the end")  # fmt: skip
    p.add_argument("--pod-cidr", default="127.135.0.0/16", help="loopback range for the Pods")
    p.add_argument("--target", type=float, default=4.0, help="in-flight requests per replica")
    p.add_argument("--max-replicas", type=int, default=5)
    p.add_argument("--idle", type=float, default=30.0, help="seconds idle before the step")
    p.add_argument("--step", type=float, default=180.0, help="seconds of load")
    p.add_argument("--down-window", type=int, default=30, help="scaleDownStabilizationSeconds")
    p.add_argument("--sim-time-scale", type=float, default=50.0)
    p.add_argument("--max-tokens", type=int, default=12, help="tokens per step-load request")
    p.add_argument("--autoscale-interval", type=float, default=3.0,
                   help="the operator's --autoscale-interval (its default: 3)")  # fmt: skip
    p.add_argument("--burst", type=int, default=20, help="concurrent first requests at zero")
    args = p.parse_args()
    args.dir = args.dir or Path(tempfile.mkdtemp(prefix="autoscale-bench-"))
    if args.dir.exists() and any(args.dir.iterdir()):
        raise SystemExit(f"{args.dir} exists and is not empty")
    print(f"load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    product = ensure_product(Progress())
    sandbox = Sandbox(args.dir, Settings(pod_cidr=args.pod_cidr), default_layout(),
                      Progress(), product)  # fmt: skip
    say("sandbox up")
    sandbox.up()
    try:
        with api_client(sandbox.kubeconfig) as api:
            install_crd(api)
            with running_operator(sandbox, product, args.autoscale_interval):
                step = step_load(api, sandbox, args)
                cold = from_zero(api, sandbox, args)
    finally:
        say("sandbox down")
        sandbox.down()
        shutil.rmtree(args.dir, ignore_errors=True)
    report_step(step, args)
    report_cold(cold)
    print(f"\nload average at the end (1, 5, 15 min): "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}")  # fmt: skip


if __name__ == "__main__":
    main()
