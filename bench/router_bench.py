"""Router overhead: direct to the backend vs. `llmservice router` vs. the Rust vllm-router.

Layout on a 2-core machine: the router under test is pinned to core 0 (taskset); the
backend (bench/fast_backend.py, answers at once so it is never the bottleneck) and the load
generator (wrk, with a Lua script that sends a different X-Session-ID per request from a
pool of 1,000) share core 1. Each run measures, for every target:

- latency p50/p99 at concurrency 1 (wrk --latency); "added" is the difference to direct;
- the most requests per second at concurrency 32 with session hashing, and the router's
  CPU time per request (utime + stime from /proc, divided by completed requests);
- CPU per streamed chunk: SSE replies of ``--chunks`` events sent ``--sse-delay`` apart (so
  every event is its own chunk on the wire), at concurrency 32; router CPU time divided by
  the events delivered;
- CPU per chat-like streamed request: the same replies to chat requests with a prompt of
  about 14 KB (a system prompt and a long user message), at concurrency 32; router CPU
  time divided by the requests completed. This is what a chat front end costs the router
  per reply: body reading and parsing, the prefix key, the stream, the bookkeeping.

Medians over ``--runs`` runs are printed as a Markdown table, with the load average before
and after (the figures are only comparable within one run on a quiet machine), then each
router's CPU figures over vllm-router's of the same run (medians and ranges of the
per-run ratios: steadier than the figures, which move by 10-40% between runs here).
vllm-router (PyPI package ``vllm-router``, ``--policy consistent_hash``) is used when
``--vllm-router`` names its executable or one is found on PATH or in
/tmp/vllm-router-venv; install it in a virtualenv of its own, it is not a project
dependency. ``--baseline [LABEL=]TREE`` (repeatable) adds
the router of another source tree (for example a worktree of an earlier commit) as one more
target, for before/after figures from one run. ``--floor`` adds ``bench/asgi_floor.py``, an
ASGI proxy on the router's own stack that only forwards: the least a request can cost here,
and ``bench/raw_floor.py``, the same without uvicorn and ASGI.
Needs ``wrk`` and ``taskset``.

    python -m bench.router_bench --runs 5 --seconds 5 --baseline before=/tmp/before
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROUTER_CORE = "0"
LOAD_CORE = "1"
TICKS = os.sysconf("SC_CLK_TCK")

POST_LUA = """
wrk.method = "POST"
wrk.body = '{"model":"m","stream":%(stream)s,"messages":%(messages)s}'
wrk.headers["Content-Type"] = "application/json"
local n = 0
request = function()
  n = n + 1
  wrk.headers["X-Session-ID"] = "session-" .. (n %% 1000)
  return wrk.format()
end
"""


HELLO = '[{"role":"user","content":"hello"}]'
# About 14 KB: a system prompt of about 1 KB and a user message of about 13 KB, the same
# for every request (so the prefix is shared, as a chat front end's system prompt is).
_WORDS = "the quick brown fox jumps over the lazy dog while the router keeps count "
CHAT = (
    f'[{{"role":"system","content":"{_WORDS * 14}"}},{{"role":"user","content":"{_WORDS * 180}"}}]'
)


# Where bench/README.md installs it (a virtualenv of its own), when it is not on PATH.
VLLM_ROUTER_VENV = "/tmp/vllm-router-venv/bin/vllm-router"  # noqa: S108


def find_vllm_router() -> str | None:
    """vllm-router on PATH, else where bench/README.md installs it, else None."""
    found = shutil.which("vllm-router")
    if found is None and Path(VLLM_ROUTER_VENV).exists():
        found = VLLM_ROUTER_VENV
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - loopback only
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not come up")


def cpu_times(pid: int) -> tuple[float, float]:
    """Seconds of CPU process ``pid`` has used so far: in user space, in the kernel."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICKS, int(fields[12]) / TICKS


def cpu_seconds(pid: int) -> float:
    return sum(cpu_times(pid))


@contextlib.contextmanager
def process(
    argv: list[str],
    core: str | None,
    log: Path | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """`argv` running (pinned to `core` unless None) until the block ends."""
    out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115 - closed below
    pinned = ["taskset", "-c", core, *argv] if core is not None else argv
    proc = subprocess.Popen(pinned, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if log:
            out.close()  # type: ignore[union-attr]


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not match:
        raise ValueError(text)
    return float(match.group(1)) * _UNITS[match.group(2)]


@dataclass
class Wrk:
    requests: int
    rate: float
    p50_ms: float = 0.0
    p99_ms: float = 0.0


def wrk(url: str, script: Path, connections: int, seconds: float, latency: bool) -> Wrk:
    argv = [
        "taskset",
        "-c",
        LOAD_CORE,
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
    ]
    argv += ["-s", str(script), "--timeout", "10s"]
    if latency:
        argv.append("--latency")
    out = subprocess.run(
        [*argv, url], capture_output=True, text=True, check=True, timeout=seconds + 60
    ).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    result = Wrk(requests, rate)
    if latency:
        result.p50_ms = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
        result.p99_ms = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    return result


@dataclass
class Sample:
    p50_ms: list[float] = field(default_factory=list)
    p99_ms: list[float] = field(default_factory=list)
    rate: list[float] = field(default_factory=list)
    cpu_per_request_us: list[float] = field(default_factory=list)
    cpu_per_chunk_us: list[float] = field(default_factory=list)
    cpu_per_chat_ms: list[float] = field(default_factory=list)


LLMSERVICE = "llmservice"
FLOOR = "ASGI floor"
RAW_FLOOR = "raw floor"
# The floors' modules: the router's stack forwarding and nothing else, with uvicorn and
# ASGI (`bench/asgi_floor.py`) and without (`bench/raw_floor.py`).
FLOORS = {FLOOR: "bench.asgi_floor", RAW_FLOOR: "bench.raw_floor"}


def router_argv(
    kind: str, port: int, backend: str, vllm_router: str | None, python: str = sys.executable
) -> list[str]:
    """The command of target ``kind``; a Python one is run by ``python``."""
    if kind in FLOORS:
        backend_port = backend.rsplit(":", 1)[1]
        return [
            python, "-m", FLOORS[kind], "--port", str(port),
            "--backend-port", backend_port,
        ]  # fmt: skip
    if kind.startswith(LLMSERVICE):
        return [
            python, "-m", "llmservice.cli", "router", "--served-model-name", "m",
            "--host", "127.0.0.1", "--port", str(port), "--static-backends", backend,
            "--drain-delay", "0", "--log-level", "warning",
        ]  # fmt: skip
    assert vllm_router is not None
    return [
        vllm_router, "--host", "127.0.0.1", "--port", str(port), "--worker-urls", backend,
        "--policy", "consistent_hash", "--log-level", "warning",
    ]  # fmt: skip


def measure(
    kind: str,
    args: argparse.Namespace,
    scripts: dict[str, Path],
    sample: Sample,
    logdir: Path,
    tree: str | None = None,
) -> None:
    """One run of every measurement against ``kind``; ``tree`` is a baseline's sources."""
    json_port, sse_port = free_port(), free_port()
    backend_argv = [sys.executable, "-m", "bench.fast_backend", "--port"]
    sse_args = ["--chunks", str(args.chunks), "--sse-delay", str(args.sse_delay)]
    with (
        process([*backend_argv, str(json_port)], LOAD_CORE),
        process([*backend_argv, str(sse_port), *sse_args], LOAD_CORE),
    ):
        wait_http(f"http://127.0.0.1:{json_port}/health")
        wait_http(f"http://127.0.0.1:{sse_port}/health")
        for phase, backend_port in (("json", json_port), ("sse", sse_port)):
            backend = f"http://127.0.0.1:{backend_port}"
            if kind == "direct":
                target, pid = backend, None
                stack: contextlib.AbstractContextManager[object] = contextlib.nullcontext()
            else:
                port = free_port()
                target = f"http://127.0.0.1:{port}"
                argv = router_argv(kind, port, backend, args.vllm_router)
                env = None
                if tree is not None:  # the same command, importing the baseline's sources
                    env = {**os.environ, "PYTHONPATH": str(Path(tree, "operator"))}
                log = logdir / f"{kind.split()[0]}-{len(kind)}-{phase}.log"
                stack = process(argv, ROUTER_CORE, log, env)
            with stack as proc:
                pid = proc.pid if isinstance(proc, subprocess.Popen) else None
                wait_http(target + ("/v1/models" if kind == "vllm-router" else "/readyz"))
                url = target + "/v1/chat/completions"
                # Warm up connections and caches.
                wrk(url, scripts[phase], 8, 1, latency=False)
                if phase == "json":
                    single = wrk(url, scripts["json"], 1, args.seconds, latency=True)
                    sample.p50_ms.append(single.p50_ms)
                    sample.p99_ms.append(single.p99_ms)
                    before = cpu_seconds(pid) if pid else 0.0
                    loaded = wrk(url, scripts["json"], 32, args.seconds, latency=False)
                    sample.rate.append(loaded.rate)
                    if pid:
                        used = cpu_seconds(pid) - before
                        sample.cpu_per_request_us.append(used / loaded.requests * 1e6)
                elif pid:
                    before = cpu_seconds(pid)
                    streams = wrk(url, scripts["sse"], 32, args.seconds, latency=False)
                    used = cpu_seconds(pid) - before
                    chunks = streams.requests * (args.chunks + 1)
                    sample.cpu_per_chunk_us.append(used / chunks * 1e6)
                    wrk(url, scripts["chat"], 8, 1, latency=False)
                    before = cpu_seconds(pid)
                    chats = wrk(url, scripts["chat"], 32, args.seconds, latency=False)
                    used = cpu_seconds(pid) - before
                    sample.cpu_per_chat_ms.append(used / chats.requests * 1e3)


def table(results: dict[str, Sample]) -> str:
    """Medians, with the range over runs in brackets."""

    def cell(values: list[float], digits: int, minus: float = 0.0) -> str:
        if not values:
            return "-"
        low, mid, high = min(values) - minus, statistics.median(values) - minus, max(values) - minus
        return f"{mid:.{digits}f} [{low:.{digits}f}-{high:.{digits}f}]"

    base = results["direct"]
    p50, p99 = statistics.median(base.p50_ms), statistics.median(base.p99_ms)
    rows = [
        "| target | p50 ms (c=1) | p99 ms (c=1) | added p50 ms | added p99 ms "
        "| req/s (c=32, sessions) | router CPU us/request | router CPU us/chunk "
        "| router CPU ms/chat stream |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in results.items():
        cells = [name, cell(s.p50_ms, 3), cell(s.p99_ms, 3)]
        if name == "direct":
            cells += ["-", "-", cell(s.rate, 0), "-", "-", "-"]
        else:
            cells += [
                cell(s.p50_ms, 3, p50),
                cell(s.p99_ms, 3, p99),
                cell(s.rate, 0),
                cell(s.cpu_per_request_us, 1),
                cell(s.cpu_per_chunk_us, 1),
                cell(s.cpu_per_chat_ms, 2),
            ]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def paired_ratios(results: dict[str, Sample], reference: str) -> str:
    """Each target's CPU figures over ``reference``'s of the same run: medians [ranges].

    A run measures every target within a minute or two, so a ratio within a run cancels
    most of what the machine did between runs (the figures themselves move by 10-40%).
    """
    base = results[reference]
    phases = ("cpu_per_request_us", "cpu_per_chunk_us", "cpu_per_chat_ms")
    rows = [
        f"| target | CPU per request / {reference} | per chunk / {reference} "
        f"| per chat stream / {reference} |",
        "|---|---|---|---|",
    ]
    for name, sample in results.items():
        if name == reference or not sample.cpu_per_request_us:
            continue
        cells = [name]
        for phase in phases:
            ratios = [
                mine / theirs
                for mine, theirs in zip(getattr(sample, phase), getattr(base, phase), strict=True)
            ]
            cells.append(
                f"{statistics.median(ratios):.3f} [{min(ratios):.3f}-{max(ratios):.3f}]"
                if ratios
                else "-"
            )
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--chunks", type=int, default=64, help="SSE events per streamed reply")
    parser.add_argument("--sse-delay", type=float, default=0.002, help="seconds between events")
    parser.add_argument("--vllm-router", default=find_vllm_router())
    parser.add_argument(
        "--baseline",
        action="append",
        default=[],
        metavar="[LABEL=]TREE",
        help="a source tree (e.g. a git worktree of an earlier commit) whose router runs "
        "as one more target in the same run, for before/after figures; repeatable",
    )
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also measure bench/asgi_floor.py and bench/raw_floor.py: the same stack"
        " forwarding and nothing else, with and without uvicorn and ASGI",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None or shutil.which("taskset") is None:
        sys.exit("router_bench needs wrk and taskset (apt-get install wrk util-linux)")
    trees: dict[str, str | None] = {"direct": None, LLMSERVICE: None}
    for given in args.baseline:
        label, _, tree = given.rpartition("=")
        trees[f"{LLMSERVICE} ({label or Path(tree).name})"] = tree
    if args.vllm_router:
        trees["vllm-router"] = None
    if args.floor:
        trees.update(dict.fromkeys(FLOORS))
    results = {kind: Sample() for kind in trees}
    loads = [os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="router-bench-") as tmp:
        scripts = {name: Path(tmp, f"{name}.lua") for name in ("json", "sse", "chat")}
        scripts["json"].write_text(POST_LUA % {"stream": "false", "messages": HELLO})
        scripts["sse"].write_text(POST_LUA % {"stream": "true", "messages": HELLO})
        scripts["chat"].write_text(POST_LUA % {"stream": "true", "messages": CHAT})
        targets = list(trees.items())
        for run in range(args.runs):
            # Each run starts one target later: a target measured always right after the
            # same other one (or always first) would carry whatever that position costs.
            shift = run % len(targets)
            for kind, tree in targets[shift:] + targets[:shift]:
                measure(kind, args, scripts, results[kind], Path(tmp), tree)
            print(f"run {run + 1}/{args.runs} done", file=sys.stderr)
    loads.append(os.getloadavg())
    for when, (one, five, fifteen) in zip(("before", "after"), loads, strict=True):
        print(f"load average {when}: {one:.2f} {five:.2f} {fifteen:.2f} (1, 5, 15 min)")
    print(table(results))
    if "vllm-router" in results:
        print()
        print(paired_ratios(results, "vllm-router"))


if __name__ == "__main__":
    main()
