"""Routing quality: how well each router keeps a conversation on the replica that caches it.

One run drives the same seeded multi-turn chat workload (`bench.chat_workload`) through each
target in turn, every target against freshly started simulator replicas (`llmservice sim`,
the ``8b-h100`` timing profile, a prefix cache too small to hold every conversation, a
bounded batch), all on loopback. Targets:

- ``session``: ``llmservice router --strategy SessionAffinity``, with ``X-Session-ID``;
- ``prefix``: the same router without the header (it falls back to the prompt's prefix);
- ``round-robin``: ``llmservice router --strategy RoundRobin``;
- ``least-load`` (not in the default set): ``--strategy LeastLoad``;
- ``vr-sticky``, ``vr-hash``: the Rust ``vllm-router`` with ``--policy sticky_least_loaded``
  and ``consistent_hash``, with ``X-Session-ID``;
- ``vr-cache``: ``vllm-router --policy cache_aware``, without the header.

Per target, from the replicas' ``/metrics`` (read before and after): the prefix-cache hit
rate (``vllm:prefix_cache_hits`` over ``vllm:prefix_cache_queries``, both in tokens), the
prefill tokens (prompt tokens not served from the cache) and the request share of the
busiest replica over the mean. From the client: time to first token (the first chunk with
content; an engine sends the role chunk at once) and end-to-end latency of the streamed
requests, errors, and "moves": turns served by another replica than the session's previous
turn, told by the ``x-inference-pod`` header each replica sets on its responses (both
routers pass it through), and the "live spread": the busiest replica's conversations under
way minus the idlest's, averaged over the run (`live_spread`; the caches' balance, where
the share is the requests'). The 1-minute load average is read as each target starts and
ends.

With ``--routers 2`` every target runs two router processes and each turn goes to one of
them (``--spread``): ``turn`` (the default) draws each turn's router replica on its own, by a
mixing hash of the session and the turn, as a load balancer that spreads every request over
several router replicas does to a conversation, the hardest case for affinity kept by each
router replica on its own; ``handover`` hashes the same string with CRC-32, which, CRC being
linear, sends the first four turns of each conversation of this workload to one router
replica and the rest to the other, or every turn to one (one hand-over at most: the pattern
of the figures measured before ``--spread`` existed).

    .venv/bin/python -m bench.routing_bench                    # the six default targets, ~10 min
    .venv/bin/python -m bench.routing_bench --quick            # a smoke run, ~3 min
    .venv/bin/python -m bench.routing_bench --targets session,vr-sticky \\
        --router-tree /path/to/other/worktree --router-arg=--load-bound=1.1
    .venv/bin/python -m bench.routing_bench --routers 2       # two router replicas per target
    .venv/bin/python -m bench.routing_bench --routers 2 --spread handover
    .venv/bin/python -m bench.routing_bench --targets session,vr-sticky --repeat 5 \\
        --dump /tmp/turns                                      # medians of five rounds
    .venv/bin/python -m bench.routing_bench --targets session,vr-sticky \\
        --variant lb4=--load-bound=4.0 --repeat 3              # one more target: other flags
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import httpx
import uvloop
from bench.admission_bench import FIRST_TOKEN, percentile
from bench.chat_workload import Session, Workload, WorkloadSpec, build, messages
from bench.router_bench import find_vllm_router, free_port, process, router_argv, wait_http

LLMSERVICE = str(Path(sys.executable).with_name("llmservice"))
MODEL = "m"
SESSION_HEADER = "X-Session-ID"
REPLICA_HEADER = "x-inference-pod"


@dataclass(frozen=True)
class Target:
    key: str
    label: str
    router: str  # "llmservice" or "vllm-router"
    mode: str  # our --strategy, or vllm-router's --policy
    session_header: bool
    flags: tuple[str, ...] = ()  # ours: flags of this target alone (`--variant`)


TARGETS = {
    t.key: t
    for t in (
        Target("session", "llmservice SessionAffinity + header", "llmservice",
               "SessionAffinity", True),
        Target("prefix", "llmservice SessionAffinity, no header", "llmservice",
               "SessionAffinity", False),
        Target("round-robin", "llmservice RoundRobin", "llmservice", "RoundRobin", True),
        Target("least-load", "llmservice LeastLoad", "llmservice", "LeastLoad", True),
        Target("vr-sticky", "vllm-router sticky_least_loaded + header", "vllm-router",
               "sticky_least_loaded", True),
        Target("vr-hash", "vllm-router consistent_hash + header", "vllm-router",
               "consistent_hash", True),
        Target("vr-cache", "vllm-router cache_aware, no header", "vllm-router",
               "cache_aware", False),
    )
}  # fmt: skip
DEFAULT_TARGETS = ("session", "prefix", "round-robin", "vr-sticky", "vr-hash", "vr-cache")


# -- the replicas and the routers -----------------------------------------------------------


@dataclass(frozen=True)
class SimSettings:
    profile: str
    cache_blocks: int
    max_num_seqs: int
    max_num_batched_tokens: int

    def argv(self, port: int, name: str) -> list[str]:
        return [
            LLMSERVICE, "sim", "--model", MODEL, "--served-model-name", MODEL,
            "--port", str(port), "--sim-replica-name", name, "--sim-profile", self.profile,
            "--sim-cache-blocks", str(self.cache_blocks),
            "--max-num-seqs", str(self.max_num_seqs),
            "--max-num-batched-tokens", str(self.max_num_batched_tokens),
        ]  # fmt: skip


def started(proc: subprocess.Popen[bytes], health: str, timeout: float = 60.0) -> None:
    """Until `health` answers; fails at once if the process exits first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            wait_http(health, timeout=1.0)
            return
        except TimeoutError:
            if proc.poll() is not None:
                message = f"exited with {proc.returncode} before {health} answered"
                raise ChildProcessError(message) from None
            if time.monotonic() > deadline:
                raise


@contextlib.contextmanager
def replicas(
    count: int, settings: SimSettings, logdir: Path, base_port: int | None = None
) -> Iterator[list[str]]:
    """`count` fresh simulators (started together, so start-up costs one wait).

    Both routers place replicas on their hash rings by address, so free ports (the default)
    change which sessions share a replica from run to run; `base_port` fixes them.
    """
    with contextlib.ExitStack() as stack:
        urls, procs = [], []
        for i in range(count):
            port = base_port + i if base_port else free_port()
            argv = settings.argv(port, f"replica-{i}")
            procs.append(stack.enter_context(process(argv, None, logdir / f"replica-{i}.log")))
            urls.append(f"http://127.0.0.1:{port}")
        for proc, url in zip(procs, urls, strict=True):
            started(proc, url + "/health")
        yield urls


@contextlib.contextmanager
def router(
    target: Target, backends: list[str], args: argparse.Namespace, logdir: Path
) -> Iterator[list[str]]:
    """``args.routers`` processes of the target's router, all in front of ``backends``;
    with ``args.peers``, ours tell each other their placements (``--peers``)."""
    peer_ports = [free_udp_port() for _ in range(args.routers)] if args.peers else []
    with contextlib.ExitStack() as stack:
        urls = []
        for n in range(args.routers):
            extra = []
            if peer_ports and target.router == "llmservice":
                others = [f"127.0.0.1:{p}" for p in peer_ports if p != peer_ports[n]]
                extra = ["--peer-port", str(peer_ports[n]), "--peers", ",".join(others)]
            log = logdir / f"router-{target.key}-{n}.log"
            urls.append(stack.enter_context(one_router(target, backends, args, log, extra)))
        yield urls


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def one_router(
    target: Target,
    backends: list[str],
    args: argparse.Namespace,
    log: Path,
    extra: list[str] | None = None,
) -> Iterator[str]:
    port = free_port()
    env = None
    if target.router == "llmservice":
        argv = router_argv("llmservice", port, ",".join(backends), None)
        argv += ["--strategy", target.mode, "--session-header", SESSION_HEADER]
        argv += args.router_arg + list(target.flags) + (extra or [])
        if args.router_tree:  # the same command, importing the other tree's sources
            env = {**os.environ, "PYTHONPATH": str(Path(args.router_tree, "operator"))}
        ready = "/readyz"
    else:
        argv = [
            args.vllm_router, "--host", "127.0.0.1", "--port", str(port),
            "--worker-urls", *backends, "--policy", target.mode, "--log-level", "warning",
            # Its metrics exporter would otherwise take a fixed port.
            "--prometheus-host", "127.0.0.1", "--prometheus-port", str(free_port()),
        ]  # fmt: skip
        ready = "/v1/models"
    url = f"http://127.0.0.1:{port}"
    with process(argv, None, log, env) as proc:
        started(proc, url + ready)
        yield url


# -- the replicas' counters -----------------------------------------------------------------

COUNTERS = (
    "vllm:prefix_cache_queries_total",
    "vllm:prefix_cache_hits_total",
    "vllm:prompt_tokens_total",
)
SERVED_REASONS = ('finished_reason="stop"', 'finished_reason="length"')


def counters(metrics_text: str) -> dict[str, float]:
    """The counters this bench reads from one replica's /metrics, summed over labels."""
    out = dict.fromkeys((*COUNTERS, "requests"), 0.0)
    for line in metrics_text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        series, value = line.rsplit(" ", 1)
        name = series.split("{", 1)[0]
        if name in out:
            out[name] += float(value)
        elif name == "vllm:request_success_total" and any(r in series for r in SERVED_REASONS):
            out["requests"] += float(value)
    return out


def scrape(urls: list[str]) -> list[dict[str, float]]:
    with httpx.Client(timeout=10, trust_env=False) as client:
        return [counters(client.get(url + "/metrics").text) for url in urls]


# -- the client -----------------------------------------------------------------------------


@dataclass
class Result:
    session: int
    turn: int
    ok: bool = False
    ttft: float | None = None
    e2e: float = 0.0
    replica: str | None = None
    started: float = 0.0  # time.perf_counter() when the request was sent


def reply_text(stream: bytes) -> str:
    """The assistant text of a chat completion event stream."""
    pieces = []
    for event in stream.split(b"\n\n"):
        data = event.strip()
        if not data.startswith(b"data:") or data == b"data: [DONE]":
            continue
        for choice in json.loads(data[5:]).get("choices", ()):
            pieces.append((choice.get("delta") or {}).get("content") or "")
    return "".join(pieces)


async def one_turn(
    client: httpx.AsyncClient, body: dict[str, object], headers: dict[str, str], result: Result
) -> str:
    started = result.started = time.perf_counter()
    chunks: list[bytes] = []
    seen = b""
    try:
        async with client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as r:
            result.replica = r.headers.get(REPLICA_HEADER)
            async for chunk in r.aiter_raw():
                chunks.append(chunk)
                if result.ttft is None:
                    seen += chunk
                    if FIRST_TOKEN.search(seen):
                        result.ttft = time.perf_counter() - started
            result.ok = r.status_code == 200
    except httpx.HTTPError:
        result.ok = False
    result.e2e = time.perf_counter() - started
    if not result.ok:
        return ""
    try:
        return reply_text(b"".join(chunks))
    except ValueError:
        result.ok = False
        return ""


SPREADS = ("turn", "handover")


def router_for(session: Session, turn: int, routers: int, spread: str = "turn") -> int:
    """Which router replica a turn goes to, the same for every target (a stable hash, not
    Python's salted one); see ``--spread`` in the module docstring."""
    key = f"{session.session_id}/{turn}".encode()
    if spread == "handover":
        return zlib.crc32(key) % routers
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") % routers


async def conversation(
    clients: list[httpx.AsyncClient],
    workload: Workload,
    index: int,
    header: bool,
    t0: float,
    results: list[Result],
    transcript: list[list[str]],
    spread: str,
) -> None:
    session: Session = workload.sessions[index]
    await asyncio.sleep(max(0.0, t0 + session.start - time.perf_counter()))
    headers = {SESSION_HEADER: session.session_id} if header else {}
    replies: list[str] = []
    for turn, spec in enumerate(session.turns):
        if spec.think:
            await asyncio.sleep(spec.think)
        body = {
            "model": MODEL,
            "stream": True,
            "max_tokens": spec.max_tokens,
            "messages": messages(workload, session, turn, replies),
        }
        result = Result(index, turn)
        client = clients[router_for(session, turn, len(clients), spread)]
        replies.append(await one_turn(client, body, headers, result))
        results.append(result)
    transcript[index] = replies


async def drive(
    urls: list[str], workload: Workload, header: bool, spread: str = "turn"
) -> tuple[list[Result], list[list[str]]]:
    """Every conversation of `workload` through the routers at `urls` (each turn to one of
    them, `router_for`): the results and every reply received."""
    results: list[Result] = []
    transcript: list[list[str]] = [[] for _ in workload.sessions]
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=256)
    timeout = httpx.Timeout(300.0, connect=10.0)
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(base_url=url, limits=limits, timeout=timeout, trust_env=False)
            )
            for url in urls
        ]
        t0 = time.perf_counter()
        await asyncio.gather(
            *(
                conversation(clients, workload, i, header, t0, results, transcript, spread)
                for i in range(len(workload.sessions))
            )
        )
    return results, transcript


def digest(transcript: list[list[str]]) -> str:
    """A short fingerprint of every reply: equal for two targets that had equal conversations."""
    return hashlib.sha256(json.dumps(transcript).encode()).hexdigest()[:12]


# -- figures --------------------------------------------------------------------------------


def moves(results: list[Result]) -> int:
    """Turns answered by another replica than the same session's previous answered turn."""
    last: dict[int, str] = {}
    count = 0
    for r in sorted(results, key=lambda r: (r.session, r.turn)):
        if r.replica is None:
            continue
        if r.session in last and last[r.session] != r.replica:
            count += 1
        last[r.session] = r.replica
    return count


# How often `live_spread` counts the conversations under way on each replica.
LIVE_SAMPLE_SECONDS = 0.5


def live_spread(results: list[Result], step: float = LIVE_SAMPLE_SECONDS) -> float:
    """The busiest replica's conversations under way minus the idlest's, every ``step``
    seconds of the run, averaged: how evenly the router spread what the caches must hold.

    A conversation is under way from its first turn's start to its last turn's end, on the
    replica of its latest turn that started (between turns, the one that will be asked
    next if it stays). Replicas that answered no turn do not count.
    """
    turns = sorted((r.started, r.session, r.replica) for r in results if r.replica is not None)
    if not turns:
        return 0.0
    replicas = sorted({replica for _, _, replica in turns})
    last_end: dict[int, float] = {}
    for r in results:
        if r.replica is not None:
            last_end[r.session] = max(last_end.get(r.session, 0.0), r.started + r.e2e)
    end = max(last_end.values())
    spreads: list[int] = []
    where: dict[int, str] = {}  # each conversation's replica as of the sample time
    index, now = 0, turns[0][0]
    while now <= end:
        while index < len(turns) and turns[index][0] <= now:
            _, session, replica = turns[index]
            where[session] = replica
            index += 1
        counts = dict.fromkeys(replicas, 0)
        for session, replica in where.items():
            if last_end[session] >= now:
                counts[replica] += 1
        spreads.append(max(counts.values()) - min(counts.values()))
        now += step
    return statistics.fmean(spreads)


@dataclass
class Row:
    label: str
    hit_rate: float
    prefill_tokens: int
    ttft_p50_ms: float
    ttft_p99_ms: float
    e2e_p99_ms: float
    share: float
    moves: int
    errors: int
    load_start: float
    load_end: float
    live_spread: float = 0.0
    requests: int = 0
    seconds: float = 0.0
    in_flight: float = 0.0
    client_cpu: float = 0.0
    digest: str = ""
    per_replica: list[int] = field(default_factory=list)


def summarize(
    label: str,
    results: list[Result],
    before: list[dict[str, float]],
    after: list[dict[str, float]],
    load: tuple[float, float],
) -> Row:
    """The table row of one target from its client results and the replicas' counters."""

    def delta(name: str) -> list[float]:
        return [a[name] - b[name] for a, b in zip(after, before, strict=True)]

    queries = sum(delta("vllm:prefix_cache_queries_total"))
    hits = sum(delta("vllm:prefix_cache_hits_total"))
    served = delta("requests")
    mean = statistics.fmean(served) if served else 0.0
    ok = [r for r in results if r.ok]
    ttfts = [r.ttft for r in ok if r.ttft is not None]
    return Row(
        label=label,
        hit_rate=hits / queries if queries else 0.0,
        prefill_tokens=round(queries - hits),
        ttft_p50_ms=percentile(ttfts, 0.50) * 1e3,
        ttft_p99_ms=percentile(ttfts, 0.99) * 1e3,
        e2e_p99_ms=percentile([r.e2e for r in ok], 0.99) * 1e3,
        share=max(served) / mean if mean else 0.0,
        moves=moves(results),
        errors=len(results) - len(ok),
        live_spread=live_spread(results),
        load_start=load[0],
        load_end=load[1],
        requests=len(results),
        per_replica=[round(s) for s in served],
    )


def quality_table(rows: list[Row]) -> str:
    lines = [
        "| target | hit rate | prefill tokens | TTFT p50 ms | TTFT p99 ms | e2e p99 ms "
        "| share max/mean | moves | errors | load 1m start / end |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.label} | {r.hit_rate:.3f} | {r.prefill_tokens:,} | {r.ttft_p50_ms:.0f} "
            f"| {r.ttft_p99_ms:.0f} | {r.e2e_p99_ms:.0f} | {r.share:.2f} | {r.moves} "
            f"| {r.errors} | {r.load_start:.2f} / {r.load_end:.2f} |"
        )
    return "\n".join(lines)


def run_table(rows: list[Row]) -> str:
    lines = [
        "| target | requests | requests per replica | live spread | seconds | mean in flight "
        "| client CPU s | transcript |",
        "|---|---:|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        per = " ".join(str(n) for n in r.per_replica)
        lines.append(
            f"| {r.label} | {r.requests} | {per} | {r.live_spread:.1f} | {r.seconds:.0f} "
            f"| {r.in_flight:.1f} | {r.client_cpu:.1f} | {r.digest} |"
        )
    return "\n".join(lines)


# -- the run --------------------------------------------------------------------------------


def client_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(
    target: Target,
    workload: Workload,
    settings: SimSettings,
    args: argparse.Namespace,
    logdir: Path,
    dump: Path | None = None,
) -> Row:
    """One target's row; with ``dump``, every turn's result is written there (JSON lines,
    ``started`` in seconds from the first request)."""
    with (
        replicas(args.replicas, settings, logdir, args.base_port) as backends,
        router(target, backends, args, logdir) as urls,
    ):
        before = scrape(backends)
        load_start = os.getloadavg()[0]
        cpu, started = client_cpu_seconds(), time.perf_counter()
        results, transcript = uvloop.run(drive(urls, workload, target.session_header, args.spread))
        seconds = time.perf_counter() - started
        cpu = client_cpu_seconds() - cpu
        load_end = os.getloadavg()[0]
        after = scrape(backends)
    label = target.label
    if args.peers and args.routers > 1 and target.router == "llmservice":
        label += ", placements told to peers"
    row = summarize(label, results, before, after, (load_start, load_end))
    row.seconds, row.client_cpu, row.digest = seconds, cpu, digest(transcript)
    row.in_flight = sum(r.e2e for r in results) / seconds if seconds else 0.0
    if dump is not None:
        dump.parent.mkdir(parents=True, exist_ok=True)
        with dump.open("w") as out:
            for r in results:
                out.write(json.dumps(asdict(r) | {"started": r.started - started}) + "\n")
    return row


def medians_table(rows: list[Row]) -> str:
    """Per target over the repeated runs: the median, and the range in brackets."""

    def cell(values: list[float], digits: int) -> str:
        low, mid, high = min(values), statistics.median(values), max(values)
        return f"{mid:.{digits}f} [{low:.{digits}f}-{high:.{digits}f}]"

    by_label: dict[str, list[Row]] = {}
    for row in rows:
        by_label.setdefault(row.label, []).append(row)
    lines = [
        "| target | runs | hit rate | TTFT p50 ms | TTFT p99 ms | e2e p99 ms | share max/mean "
        "| moves | live spread |",
        "|---|---:|---|---|---|---|---|---|---|",
    ]
    for label, group in by_label.items():
        lines.append(
            f"| {label} | {len(group)} | {cell([r.hit_rate for r in group], 3)} "
            f"| {cell([r.ttft_p50_ms for r in group], 0)} "
            f"| {cell([r.ttft_p99_ms for r in group], 0)} "
            f"| {cell([r.e2e_p99_ms for r in group], 0)} "
            f"| {cell([r.share for r in group], 2)} | {cell([r.moves for r in group], 0)} "
            f"| {cell([r.live_spread for r in group], 1)} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--targets",
        default=",".join(DEFAULT_TARGETS),
        help=f"comma-separated, of: {', '.join(TARGETS)}",
    )
    p.add_argument(
        "--quick", action="store_true", help="a smoke run: 40 sessions started at 10 a second"
    )
    p.add_argument("--sessions", type=int, default=None, help="default 300 (--quick: 40)")
    p.add_argument("--seed", type=int, default=WorkloadSpec.seed)
    p.add_argument(
        "--session-rate",
        type=float,
        default=None,
        help=f"sessions started per second (default {WorkloadSpec.session_rate:g})",
    )
    p.add_argument("--replicas", type=int, default=4)
    p.add_argument(
        "--routers",
        type=int,
        default=1,
        help="router processes per target; each turn of a conversation goes to one of them"
        " by a hash of the session and the turn, as a load balancer in front of several"
        " router replicas spreads them (default 1)",
    )
    p.add_argument(
        "--peers",
        action="store_true",
        help="with --routers 2 or more: this router's processes tell each other their"
        " placements (--peer-port, --peers; vllm-router has no such thing)",
    )
    p.add_argument(
        "--spread",
        choices=SPREADS,
        default="turn",
        help="with --routers 2 or more: each turn's router replica drawn on its own (turn),"
        " or one hand-over per conversation at most (handover, CRC-32); see the docstring",
    )
    p.add_argument(
        "--base-port",
        type=int,
        help="replicas on this port and the next ones (default: free ports, which move the"
        " hash rings from run to run); below the ephemeral range (32768-60999 on Linux),"
        " where an outgoing connection may hold one",
    )
    p.add_argument("--sim-profile", default="8b-h100")
    p.add_argument(
        "--cache-blocks",
        type=int,
        default=1200,
        help="prefix cache per replica, in blocks of 16 tokens",
    )
    p.add_argument("--max-num-seqs", type=int, default=16)
    p.add_argument("--max-num-batched-tokens", type=int, default=4096)
    p.add_argument(
        "--router-tree", help="run our router from this source tree (PYTHONPATH=TREE/operator)"
    )
    p.add_argument(
        "--router-arg",
        action="append",
        default=[],
        help="an extra flag for our router's targets (repeatable; use --router-arg=--x)",
    )
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=FLAGS",
        help="one more target: the session target with these flags of our router,"
        " comma-separated (repeatable), run in the same rounds as the others, for example"
        " --variant lb4=--load-bound=4.0",
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run the targets this many times, each round starting one target later, and"
        " add a table of medians (tail latencies vary from run to run)",
    )
    p.add_argument("--dump", help="write every turn's result here, one JSON-lines file per run")
    p.add_argument(
        "--vllm-router",
        default=find_vllm_router(),
    )
    args = p.parse_args(argv)
    if args.sessions is None:
        args.sessions = 40 if args.quick else WorkloadSpec.sessions
    if args.session_rate is None:
        args.session_rate = 10.0 if args.quick else WorkloadSpec.session_rate
    return args


def variant(spec: str) -> Target:
    """The session target with extra flags, from ``NAME=FLAG,FLAG``."""
    name, sep, flags = spec.partition("=")
    if not sep or not name or not flags:
        sys.exit(f"--variant {spec!r}: expected NAME=FLAGS, e.g. lb4=--load-bound=4.0")
    base = TARGETS["session"]
    return replace(
        base, key=f"session-{name}", label=f"{base.label} ({flags})", flags=tuple(flags.split(","))
    )


def main() -> None:
    args = parse_args()
    keys = [k.strip() for k in args.targets.split(",") if k.strip()]
    unknown = [k for k in keys if k not in TARGETS]
    if unknown:
        sys.exit(f"unknown targets {unknown}; known: {', '.join(TARGETS)}")
    targets = [TARGETS[k] for k in keys] + [variant(spec) for spec in args.variant]
    if not args.vllm_router:
        skipped = [t.key for t in targets if t.router == "vllm-router"]
        targets = [t for t in targets if t.router != "vllm-router"]
        if skipped:
            print(f"no vllm-router found (--vllm-router): skipping {skipped}", file=sys.stderr)
    if args.router_tree:  # so that tables of two trees can be told apart
        name = Path(args.router_tree).resolve().name
        targets = [
            replace(t, label=f"{t.label} [{name}]") if t.router == "llmservice" else t
            for t in targets
        ]
    spec = WorkloadSpec(sessions=args.sessions, seed=args.seed, session_rate=args.session_rate)
    workload = build(spec)
    settings = SimSettings(
        args.sim_profile, args.cache_blocks, args.max_num_seqs, args.max_num_batched_tokens
    )
    rows, failed = [], []
    with tempfile.TemporaryDirectory(prefix="routing-bench-") as tmp:
        rounds = [
            (round_, target)
            for round_ in range(args.repeat)
            for target in targets[round_ % len(targets) :] + targets[: round_ % len(targets)]
        ]
        for round_, target in rounds:
            print(f"{target.label}: {workload.requests} requests ...", file=sys.stderr)
            dump = Path(args.dump, f"{target.key}-{round_}.jsonl") if args.dump else None
            try:
                row = measure(target, workload, settings, args, Path(tmp), dump)
            except (OSError, TimeoutError, subprocess.SubprocessError) as exc:
                # One target that does not start (a broken tree, a bad --router-arg) should
                # not cost the others' figures: report it with the end of its log.
                log = Path(tmp, f"router-{target.key}-0.log")
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                print(f"{target.label} failed: {exc}\n{tail}", file=sys.stderr)
                failed.append(f"{target.label}: {exc}")
                continue
            print(quality_table([row]).splitlines()[-1], file=sys.stderr)
            rows.append(row)
    tree = f", our router from {args.router_tree}" if args.router_tree else ""
    extra = f", router args {' '.join(args.router_arg)}" if args.router_arg else ""
    print("python -m bench.routing_bench " + " ".join(sys.argv[1:]))
    print(
        f"{args.replicas} replicas ({settings.profile}, prefix cache {settings.cache_blocks}"
        f" blocks of 16 tokens, max-num-seqs {settings.max_num_seqs}, max-num-batched-tokens"
        f" {settings.max_num_batched_tokens}); {spec.sessions} sessions, {workload.requests}"
        f" requests, seed {spec.seed}, {spec.session_rate:g} sessions/s{tree}{extra}; "
        f"{os.cpu_count()} CPUs\n"
    )
    print(quality_table(rows))
    print()
    print(run_table(rows))
    if args.repeat > 1:
        print()
        print(medians_table(rows))
    for failure in failed:
        print(f"\nFailed: {failure}")
    digests = {r.digest for r in rows}
    if len(digests) > 1:
        print("\nThe transcripts differ between targets (errors change the conversations).")


if __name__ == "__main__":
    main()
