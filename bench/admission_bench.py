"""Admission control: priority under overload, fair shares, rate-limit accuracy, and the cost.

Everything runs on loopback in one run, so ratios compare like with like:

1. **Priority under overload.** Two simulated engine replicas (``--sim-profile 8b-h100``)
   behind the router with admission on (cap = the engines' ``--max-num-seqs``). Key
   ``high`` (priority 10) offers half the fleet's capacity, key ``low`` (priority 1) 2.5
   times it, as Poisson arrivals of streamed chat requests. Reported: ``high``'s time to
   first token (p50, p99) against ``high`` alone; ``low``'s 429s (each with its
   Retry-After) and its longest wait; the most requests any engine ran at once and its
   waiting queue (0 means the caps kept the engines' own queues empty); the fleet's
   generation tokens/s against the same load with admission off.
2. **Shares when both keys are backlogged**: both keys offer twice the capacity with room
   to queue; each key's share of the requests served.
3. **Rate-limit accuracy**: a key limited to ``--rpm`` requests a minute offers three
   times that for ``--rate-seconds``; accepted requests against ``rate x time + burst``.
4. **Unloaded-path CPU**: one request at a time to a backend that answers at once; the
   router process's CPU time per request with admission off (the same API key, without
   limits) and on (caps, a global limit, a key with request and token limits whose
   ``x-ratelimit-*`` headers go on every response, priority set on the engine request),
   alternated.

The router runs in a child process built from `create_app` with its keys given directly
(``serve-router`` below). Figures go to stdout as Markdown. Slow: about
``4 * --seconds + --rate-seconds + 30`` seconds.

    .venv/bin/python -m bench.admission_bench --seconds 60 --rate-seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import random
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from bench.router_bench import cpu_seconds, free_port, process, wait_http

PYTHON = sys.executable
LLMSERVICE = str(Path(sys.executable).with_name("llmservice"))
KEYS = {"high": "sk-bench-high-0123456789", "low": "sk-bench-low-0123456789",
        "limited": "sk-bench-limited-0123456789"}  # fmt: skip
MAX_NUM_SEQS = 8
MAX_TOKENS = 128
QUEUE_TIMEOUT = 10.0
FIRST_TOKEN = re.compile(rb'"content":\s*"[^"]')


# -- the router under test, in a child process ----------------------------------------------


def serve_router(argv: list[str]) -> None:
    """``serve-router``: a router whose keys (with priorities and limits) are built here."""
    from llmservice.router import StaticDiscovery, create_app
    from llmservice.router.accesslog import AccessLog
    from llmservice.router.auth import ApiKeys
    from llmservice.router.cli import build_config, parser
    from llmservice.router.clients import Client
    from llmservice.router.server import serve

    p = argparse.ArgumentParser()
    p.add_argument("--keys", default="")  # name:priority:max_queued:rpm:tpm,...
    ours, rest = p.parse_known_args(argv)
    config = build_config(parser().parse_args(rest))
    clients = {}
    for entry in filter(None, ours.keys.split(",")):
        name, priority, queued, rpm, tpm = entry.split(":")
        clients[hashlib.sha256(KEYS[name].encode()).digest()] = Client(
            name,
            priority=int(priority),
            max_queued=int(queued) if queued else None,
            requests_per_minute=int(rpm) if rpm else None,
            tokens_per_minute=int(tpm) if tpm else None,
        )
    app = create_app(
        config,
        discovery=StaticDiscovery(config.discovery.static_backends),
        access_log=AccessLog(enabled=False),
        api_keys=ApiKeys(clients) if clients else None,
    )
    serve(app, host="127.0.0.1", port=config_port(rest), log_level="warning",
          drain_delay=0.0, grace_period=5.0)  # fmt: skip


def config_port(argv: list[str]) -> int:
    return int(argv[argv.index("--port") + 1])


@contextlib.contextmanager
def started(argv: list[str], health: str) -> Iterator[subprocess.Popen[bytes]]:
    """`argv` running, once `health` answers, until the block ends (not pinned)."""
    with process(argv, None) as proc:
        wait_http(health)
        yield proc


@contextlib.contextmanager
def sims(count: int, profile: str) -> Iterator[list[str]]:
    with contextlib.ExitStack() as stack:
        urls = []
        for i in range(count):
            port = free_port()
            argv = [LLMSERVICE, "sim", "--model", "m", "--served-model-name", "m",
                    "--port", str(port), "--max-num-seqs", str(MAX_NUM_SEQS),
                    "--sim-profile", profile, "--scheduling-policy", "priority",
                    "--sim-replica-name", f"sim-{i}", "--sim-output-len", "128:128"]  # fmt: skip
            url = f"http://127.0.0.1:{port}"
            stack.enter_context(started(argv, url + "/health"))
            urls.append(url)
        yield urls


@contextlib.contextmanager
def router(
    backends: list[str], *, admission: bool, keys: str = "", extra: tuple[str, ...] = ()
) -> Iterator[tuple[str, int]]:
    port = free_port()
    argv = [PYTHON, "-m", "bench.admission_bench", "serve-router", "--keys", keys,
            "--served-model-name", "m", "--port", str(port),
            "--static-backends", ",".join(backends), "--strategy", "LeastLoad"]  # fmt: skip
    if admission:
        argv += ["--max-in-flight-per-replica", str(MAX_NUM_SEQS), "--max-queued", "1000",
                 "--queue-timeout", str(QUEUE_TIMEOUT), "--engine-priority"]  # fmt: skip
    argv += list(extra)
    url = f"http://127.0.0.1:{port}"
    with started(argv, url + "/healthz") as proc:
        yield url, proc.pid


# -- load -----------------------------------------------------------------------------------


@dataclass
class Outcome:
    key: str
    status: int
    started: float
    ttft: float | None = None
    seconds: float = 0.0
    retry_after: str | None = None


@dataclass
class Load:
    outcomes: list[Outcome] = field(default_factory=list)

    def of(self, key: str, status: int | None = None) -> list[Outcome]:
        return [o for o in self.outcomes if o.key == key and (status is None or o.status == status)]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def one(session: aiohttp.ClientSession, url: str, key: str | None, load: Load) -> None:
    prompt = f"tell me something {random.random()}"
    body = {
        "model": "m",
        "stream": True,
        # Answers of different lengths, as in real traffic (mean MAX_TOKENS).
        "max_tokens": random.randint(MAX_TOKENS // 4, MAX_TOKENS * 7 // 4),
        "messages": [{"role": "user", "content": prompt}],
    }
    headers = {"Authorization": f"Bearer {KEYS[key]}"} if key else {}
    outcome = Outcome(key or "anonymous", 0, time.monotonic())
    try:
        async with session.post(url + "/v1/chat/completions", json=body, headers=headers) as r:
            outcome.status = r.status
            outcome.retry_after = r.headers.get("Retry-After")
            seen = b""
            async for chunk in r.content.iter_any():
                # The first token, not the first byte: an engine sends the role at once.
                if outcome.ttft is None:
                    seen += chunk
                    if FIRST_TOKEN.search(seen):
                        outcome.ttft = time.monotonic() - outcome.started
    except aiohttp.ClientError:
        outcome.status = -1
    outcome.seconds = time.monotonic() - outcome.started
    load.outcomes.append(outcome)


async def poisson(
    session: aiohttp.ClientSession,
    url: str,
    key: str | None,
    rate: float,
    seconds: float,
    load: Load,
) -> None:
    tasks = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        tasks.append(asyncio.create_task(one(session, url, key, load)))
        await asyncio.sleep(random.expovariate(rate))
    await asyncio.gather(*tasks)


async def engine_stats(session: aiohttp.ClientSession, urls: list[str]) -> dict[str, float]:
    """Tokens generated (all engines), the most running and waiting on one, running in all."""
    out: dict[str, float] = {"tokens": 0.0, "running": 0.0, "waiting": 0.0, "total": 0.0}
    for url in urls:
        async with session.get(url + "/metrics") as r:
            text = await r.text()
        for line in text.splitlines():
            value = float(line.rsplit(" ", 1)[1]) if line.startswith("vllm:") else 0.0
            if line.startswith("vllm:generation_tokens_total"):
                out["tokens"] += value
            elif line.startswith("vllm:num_requests_running"):
                out["running"] = max(out["running"], value)
                out["total"] += value
            elif line.startswith("vllm:num_requests_waiting"):
                out["waiting"] = max(out["waiting"], value)
    return out


@dataclass
class Run:
    load: Load
    tokens_per_second: float
    peak_running: float
    peak_waiting: float
    mean_running: float  # over all engines, sampled every 0.1 s
    router_metrics: str = ""


async def offered(url: str, engines: list[str], rates: dict[str, float], seconds: float) -> Run:
    load = Load()
    peaks = {"running": 0.0, "waiting": 0.0}
    running: list[float] = []
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        before = await engine_stats(session, engines)
        started_at = time.monotonic()

        async def watch() -> None:
            while True:
                stats = await engine_stats(session, engines)
                for name in peaks:
                    peaks[name] = max(peaks[name], stats[name])
                running.append(stats["total"])
                await asyncio.sleep(0.1)

        watcher = asyncio.create_task(watch())
        await asyncio.gather(
            *(poisson(session, url, key, rate, seconds, load) for key, rate in rates.items())
        )
        elapsed = time.monotonic() - started_at
        watcher.cancel()
        after = await engine_stats(session, engines)
        async with session.get(url + "/metrics") as r:
            router_metrics = await r.text()
    return Run(load, (after["tokens"] - before["tokens"]) / elapsed, peaks["running"],
               peaks["waiting"], statistics.fmean(running or [0.0]), router_metrics)  # fmt: skip


def waited_beyond(metrics: str, key: str, seconds: float) -> int:
    """Requests of ``key`` the router dispatched after more than ``seconds`` in its queue."""
    prefix = f'llmservice_router_queue_wait_seconds_bucket{{key="{key}",le='
    count = within = 0.0
    for line in metrics.splitlines():
        if line.startswith(prefix + '"+Inf"}'):
            count = float(line.rsplit(" ", 1)[1])
        elif line.startswith(prefix + f'"{seconds!r}"}}'):
            within = float(line.rsplit(" ", 1)[1])
    return int(count - within)


# -- scenarios ------------------------------------------------------------------------------


def capacity(profile_step: float = 0.0083) -> float:
    """Requests/s the fleet of two replicas serves: slots / seconds per request."""
    return 2 * MAX_NUM_SEQS / (MAX_TOKENS * profile_step)


def priority_under_overload(seconds: float) -> None:
    rate = capacity()
    keys = "high:10:::,low:1:20::"
    with sims(2, "8b-h100") as engines:
        with router(engines, admission=True, keys=keys) as (url, _):
            alone = asyncio.run(offered(url, engines, {"high": rate / 2}, seconds))
            mixed = asyncio.run(
                offered(url, engines, {"high": rate / 2, "low": rate * 2.5}, seconds)
            )
        with router(engines, admission=False, keys=keys) as (url, _):
            off = asyncio.run(offered(url, engines, {"high": rate / 2, "low": rate * 2.5}, seconds))
    print(f"\n### Priority under overload ({seconds:g} s, capacity ~{rate:.1f} req/s)\n")
    print("| run | high TTFT p50 | high TTFT p99 | high 200s | low 200s | low 429s "
          "| low 429s with Retry-After | low dispatched after the queue timeout "
          "| engine peak running / waiting | mean running (of 16) | fleet tokens/s |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, run in (("high alone", alone), ("mixed, admission on", mixed),
                      ("mixed, admission off", off)):  # fmt: skip
        high = [o.ttft for o in run.load.of("high", 200) if o.ttft is not None]
        low_429 = run.load.of("low", 429)
        late = (
            waited_beyond(run.router_metrics, "low", QUEUE_TIMEOUT)
            if name != "mixed, admission off"
            else "-"
        )
        print(f"| {name} | {percentile(high, 0.5) * 1000:.0f} ms "
              f"| {percentile(high, 0.99) * 1000:.0f} ms | {len(run.load.of('high', 200))} "
              f"| {len(run.load.of('low', 200))} | {len(low_429)} "
              f"| {sum(o.retry_after is not None for o in low_429)} "
              f"| {late} | {run.peak_running:.0f} / {run.peak_waiting:.0f} "
              f"| {run.mean_running:.1f} | {run.tokens_per_second:.0f} |")  # fmt: skip


def shares(seconds: float) -> None:
    rate = capacity()
    with (
        sims(2, "8b-h100") as engines,
        router(engines, admission=True, keys="high:10:1000::,low:1:1000::") as (url, _),
    ):
        run = asyncio.run(offered(url, engines, {"high": rate * 2, "low": rate * 2}, seconds))
    # Served requests that started after the queue had filled (the first few seconds).
    start = min(o.started for o in run.load.outcomes) + 3.0
    end = start + seconds - 6.0
    served = {
        key: [o for o in run.load.of(key, 200) if start <= o.started + (o.ttft or 0.0) <= end]
        for key in ("high", "low")
    }
    total = sum(len(v) for v in served.values())
    print(f"\n### Dispatch share, both keys backlogged ({seconds:g} s)\n")
    print("| key | priority | requests served | share | priority ratio |")
    print("|---|---:|---:|---:|---:|")
    for key, weight in (("high", 10), ("low", 1)):
        share = len(served[key]) / total if total else float("nan")
        print(f"| {key} | {weight} | {len(served[key])} | {share:.3f} | {weight / 11:.3f} |")


def rate_accuracy(seconds: float, rpm: int) -> None:
    with (
        sims(1, "instant") as engines,
        router(engines, admission=False, keys=f"limited:1::{rpm}:") as (url, _),
    ):
        load = Load()

        async def drive() -> None:
            async with aiohttp.ClientSession() as session:
                await poisson(session, url, "limited", 3 * rpm / 60, seconds, load)

        asyncio.run(drive())
    accepted = len(load.of("limited", 200))
    elapsed = max(o.started for o in load.outcomes) - min(o.started for o in load.outcomes)
    expected = rpm / 60 * elapsed + rpm
    print(f"\n### Rate-limit accuracy ({rpm} a minute, offered 3x for {seconds:g} s)\n")
    print("| offered | accepted | rate x time + burst | error |")
    print("|---:|---:|---:|---:|")
    print(f"| {len(load.outcomes)} | {accepted} | {expected:.0f} "
          f"| {(accepted - expected) / expected * 100:+.1f}% |")  # fmt: skip


def unloaded_cpu(requests: int, rounds: int) -> None:
    backend_port = free_port()
    backend = [PYTHON, "-m", "bench.fast_backend", "--port", str(backend_port)]
    backend_url = f"http://127.0.0.1:{backend_port}"
    # The same key both ways (authentication is not admission); limits only when on.
    keys = {"off": "limited:1:::", "on": "limited:5:100:1000000:100000000"}
    on_flags = ("--requests-per-minute", "100000000")
    per: dict[str, list[float]] = {"off": [], "on": []}

    async def drive(url: str, key: str | None) -> None:
        headers = {"Authorization": f"Bearer {KEYS[key]}"} if key else {}
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        async with aiohttp.ClientSession() as session:
            for _ in range(requests):
                async with session.post(url + "/v1/chat/completions", json=body,
                                        headers=headers) as r:  # fmt: skip
                    await r.read()
                    assert r.status == 200, r.status

    with started(backend, backend_url + "/health"):
        for _ in range(rounds):
            for mode in ("off", "on"):
                admission = mode == "on"
                with router([backend_url], admission=admission, keys=keys[mode],
                            extra=on_flags if admission else ()) as (url, pid):  # fmt: skip
                    asyncio.run(drive(url, "limited"))  # warm up
                    before = cpu_seconds(pid)
                    asyncio.run(drive(url, "limited"))
                    per[mode].append((cpu_seconds(pid) - before) / requests * 1e6)
    off, on = statistics.median(per["off"]), statistics.median(per["on"])
    print(f"\n### Unloaded path: router CPU per request ({rounds} rounds of {requests})\n")
    print("| admission | CPU per request (median) | rounds |")
    print("|---|---:|---|")
    print(f"| off | {off:.0f} us | {', '.join(f'{v:.0f}' for v in per['off'])} |")
    print(f"| on | {on:.0f} us | {', '.join(f'{v:.0f}' for v in per['on'])} |")
    print(f"\nDifference: {on - off:+.0f} us per request.")


def admission_path_micro(calls: int = 50_000) -> None:
    """The admission calls of one request, timed in this process (no network noise)."""
    import timeit

    from prometheus_client import CollectorRegistry

    from llmservice.router.admission import AdmissionMetrics, Dispatcher, RateLimiter
    from llmservice.router.balancer import LeastLoadBalancer
    from llmservice.router.clients import Client
    from llmservice.router.payloads import parse_body, set_fields

    limiter = RateLimiter(100_000_000, 0.0)
    client = Client("limited", priority=5, max_queued=100, requests_per_minute=1_000_000,
                    tokens_per_minute=100_000_000)  # fmt: skip
    metrics = AdmissionMetrics(CollectorRegistry())
    loads: dict[str, int] = {}
    balancer = LeastLoadBalancer()
    balancer.update(["a"])
    dispatcher = Dispatcher(balancer, loads, lambda name: None, cap=256, max_queued=10,
                            queue_timeout=1.0)  # fmt: skip
    dispatcher.update(["a"])
    raw = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}'
    fields = parse_body(raw)
    now = [0.0]

    def on() -> None:  # what admission adds to one request, all limits on
        now[0] += 0.001
        if limiter.limited(client):
            limiter.admit(client, now[0])
        dispatcher.try_acquire(None, ())
        metrics.waited(client.name, 0.0)
        loads["a"] -= 1
        dispatcher.freed("a")
        metrics.add_tokens(client.name, 7, 3)
        limiter.charge_tokens(client, 10, now[0])
        set_fields(raw, fields, {"priority": b"-5"})  # the engine priority, spliced in

    def off() -> None:  # the same steps before admission: pick, count, uncount
        balancer.pick(None, loads, ())
        loads["a"] = loads.get("a", 0) + 1
        loads["a"] -= 1

    runs = {name: [timeit.timeit(f, number=calls) / calls * 1e6 for _ in range(5)]
            for name, f in (("on", on), ("off", off))}  # fmt: skip
    on_us, off_us = statistics.median(runs["on"]), statistics.median(runs["off"])
    print(
        f"\nIn-process, the admission calls of one request: {on_us:.1f} us with every"
        f" limit on against {off_us:.1f} us for the pick alone (+{on_us - off_us:.1f} us;"
        " medians of 5)."
    )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "serve-router":
        serve_router(sys.argv[2:])
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--seconds", type=float, default=60.0, help="length of each load phase")
    p.add_argument("--rate-seconds", type=float, default=60.0)
    p.add_argument("--rpm", type=int, default=600)
    p.add_argument("--cpu-requests", type=int, default=2000)
    p.add_argument("--cpu-rounds", type=int, default=3)
    p.add_argument("--only", choices=["priority", "shares", "rate", "cpu"], action="append")
    args = p.parse_args()
    only = set(args.only or ["priority", "shares", "rate", "cpu"])
    if "cpu" in only:
        unloaded_cpu(args.cpu_requests, args.cpu_rounds)
        admission_path_micro()
    if "rate" in only:
        rate_accuracy(args.rate_seconds, args.rpm)
    if "shares" in only:
        shares(args.seconds)
    if "priority" in only:
        priority_under_overload(args.seconds)


if __name__ == "__main__":
    main()
