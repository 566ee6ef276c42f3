"""Router CPU per request, per streamed chunk and per chat stream, all routers loaded at once.

`router_bench.py` measures one router after another, and on a shared machine the CPU time
of the same router moves by 10-40% from one minute to the next: more than the differences
it is asked to rank. Here every target runs at once, all pinned to core 0, in front of one
`fast_backend.py` on core 1, and each round loads them all together, one wrk per target:
whatever the machine does during a round, every target's figure of that round shares it.
Each figure is the router's CPU time (utime + stime from /proc) over the round divided by
what it served, as in router_bench; each round also gives every target's ratio to the
first target of the list (``--reference``, vllm-router by default when it is found),
and the table shows the medians of the figures and of the per-round ratios, with their
ranges. The targets share core 0 as well as the machine, so a target's figures include what
the others' work costs its caches; they are for comparing targets, not absolute figures.

Phases of a round: non-streamed chat requests at ``--plain-connections`` per target (us per
request), SSE replies of ``--chunks`` events sent ``--sse-delay`` apart at
``--stream-connections`` per target (us per chunk, the events and ``[DONE]``), and the
same replies to chat requests of about 14 KB (ms per chat stream). ``--split`` adds a table
of each figure's user-space and kernel parts (utime and stime apart).

``--interpreter LABEL=PYTHON`` adds this tree's router run by another Python (one with the
router's dependencies installed: a virtualenv of the wheel, as `image_python.sh` makes):
the interpreter counts as much as a change of code. A CPython built without profile-guided
and link-time optimisation (pyenv's default) spends 9-14% more CPU per request and 2-6%
more per streamed part on the same router than one built with them, as the image's
(python:3.11-slim) and Debian's are.

    PATH=$PATH:/tmp/vllm-router-venv/bin python -m bench.router_side_by_side --rounds 8
    python -m bench.router_side_by_side --baseline before=/tmp/before-tree
    python -m bench.router_side_by_side --interpreter debian=/tmp/debian-venv/bin/python
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from bench.router_bench import (
    CHAT,
    FLOORS,
    HELLO,
    LLMSERVICE,
    LOAD_CORE,
    POST_LUA,
    ROUTER_CORE,
    cpu_times,
    find_vllm_router,
    free_port,
    process,
    router_argv,
    wait_http,
    wrk,
)

VLLM_ROUTER = "vllm-router"
_TREE = Path(__file__).resolve().parents[1]  # the source tree this file belongs to
# (phase, wrk script, what a figure is per, unit scale)
PHASES = (
    ("plain", "json", "us/request", 1e6),
    ("stream", "sse", "us/chunk", 1e6),
    ("chat", "chat", "ms/chat stream", 1e3),
)


@dataclass(frozen=True)
class Target:
    """A router to measure: ``tree``'s sources (None: as installed or this tree's) run by
    ``python`` (Python targets only)."""

    tree: str | None = None
    python: str = sys.executable


@dataclass
class Figures:
    """Per phase: each round's figure, and its ratio to the reference's in that round."""

    values: dict[str, list[float]] = field(default_factory=dict)
    ratios: dict[str, list[float]] = field(default_factory=dict)
    # The same, of the user-space and the kernel part of each figure.
    user: dict[str, list[float]] = field(default_factory=dict)
    user_ratios: dict[str, list[float]] = field(default_factory=dict)
    kernel: dict[str, list[float]] = field(default_factory=dict)
    kernel_ratios: dict[str, list[float]] = field(default_factory=dict)


def _cell(values: list[float], digits: int) -> str:
    if not values:
        return "-"
    low, mid, high = min(values), statistics.median(values), max(values)
    return f"{mid:.{digits}f} [{low:.{digits}f}-{high:.{digits}f}]"


def table(results: dict[str, Figures], reference: str) -> str:
    """Medians over the rounds with their ranges, and the paired ratios to ``reference``."""
    head = ["target"]
    for _, _, per, _ in PHASES:
        head += [f"router CPU {per}", f"ratio to {reference}"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, figures in results.items():
        cells = [name]
        for phase, _, _, _ in PHASES:
            digits = 2 if phase == "chat" else 1
            cells.append(_cell(figures.values.get(phase, []), digits))
            cells.append("-" if name == reference else _cell(figures.ratios.get(phase, []), 3))
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def split_table(results: dict[str, Figures], reference: str) -> str:
    """`table`'s figures in their user-space and kernel parts."""
    head = ["target"]
    for _, _, per, _ in PHASES:
        head += [f"user {per}", "ratio", f"kernel {per}", "ratio"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, figures in results.items():
        cells = [name]
        for phase, _, _, _ in PHASES:
            digits = 2 if phase == "chat" else 1
            for values, ratios in (
                (figures.user, figures.user_ratios),
                (figures.kernel, figures.kernel_ratios),
            ):
                cells.append(_cell(values.get(phase, []), digits))
                cells.append("-" if name == reference else _cell(ratios.get(phase, []), 3))
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _load(url: str, script: Path, connections: int, seconds: float) -> int:
    """Requests completed by wrk against ``url`` in ``seconds``."""
    return wrk(url + "/v1/chat/completions", script, connections, seconds, latency=False).requests


def run(targets: dict[str, Target], args: argparse.Namespace, tmp: Path) -> dict[str, Figures]:
    """Start every target at once, then load them together for ``args.rounds`` rounds."""
    scripts = {name: tmp / f"{name}.lua" for name in ("json", "sse", "chat")}
    scripts["json"].write_text(POST_LUA % {"stream": "false", "messages": HELLO})
    scripts["sse"].write_text(POST_LUA % {"stream": "true", "messages": HELLO})
    scripts["chat"].write_text(POST_LUA % {"stream": "true", "messages": CHAT})
    reference = next(iter(targets))
    results = {kind: Figures() for kind in targets}
    backend_port = free_port()
    backend_argv = [
        sys.executable, "-m", "bench.fast_backend", "--port", str(backend_port),
        "--chunks", str(args.chunks), "--sse-delay", str(args.sse_delay),
    ]  # fmt: skip
    with contextlib.ExitStack() as stack:
        stack.enter_context(process(backend_argv, LOAD_CORE))
        backend = f"http://127.0.0.1:{backend_port}"
        wait_http(backend + "/health")
        urls: dict[str, str] = {}
        pids: dict[str, int] = {}
        for number, (kind, target) in enumerate(targets.items()):
            port = free_port()
            env = None
            if target.tree is not None:  # the same command, importing the tree's sources
                env = {**os.environ, "PYTHONPATH": str(Path(target.tree, "operator"))}
            argv = router_argv(kind, port, backend, args.vllm_router, target.python)
            proc = stack.enter_context(process(argv, ROUTER_CORE, tmp / f"{number}.log", env))
            pids[kind], urls[kind] = proc.pid, f"http://127.0.0.1:{port}"
        for kind, url in urls.items():
            wait_http(url + ("/v1/models" if kind == VLLM_ROUTER else "/readyz"))
            for lua in scripts.values():  # connections and caches warm
                wrk(url + "/v1/chat/completions", lua, 8, 1, latency=False)
        with concurrent.futures.ThreadPoolExecutor(len(targets)) as pool:
            for round_ in range(args.rounds):
                for phase, script, _, scale in PHASES:
                    plain = phase == "plain"
                    connections = args.plain_connections if plain else args.stream_connections
                    parts = args.chunks + 1 if phase == "stream" else 1  # events and [DONE]
                    before = {kind: cpu_times(pid) for kind, pid in pids.items()}
                    loads = {
                        kind: pool.submit(_load, url, scripts[script], connections, args.seconds)
                        for kind, url in urls.items()
                    }
                    served = {kind: load.result() * parts for kind, load in loads.items()}
                    used = {kind: cpu_times(pid) for kind, pid in pids.items()}
                    user = {
                        kind: (used[kind][0] - before[kind][0]) / served[kind] * scale
                        for kind in pids
                    }
                    kernel = {
                        kind: (used[kind][1] - before[kind][1]) / served[kind] * scale
                        for kind in pids
                    }
                    total = {kind: user[kind] + kernel[kind] for kind in pids}
                    for kind in pids:
                        figures = results[kind]
                        for values, ratios, of in (
                            (figures.values, figures.ratios, total),
                            (figures.user, figures.user_ratios, user),
                            (figures.kernel, figures.kernel_ratios, kernel),
                        ):
                            values.setdefault(phase, []).append(of[kind])
                            ratio = of[kind] / of[reference] if of[reference] else math.nan
                            ratios.setdefault(phase, []).append(ratio)
                print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr)
    return results


def choose_targets(args: argparse.Namespace) -> dict[str, Target]:
    """The targets the arguments name, the reference of the ratios first."""
    targets: dict[str, Target] = {}
    if args.vllm_router:
        targets[VLLM_ROUTER] = Target()
    targets[LLMSERVICE] = Target()
    for given in args.baseline:
        label, _, tree = given.rpartition("=")
        targets[f"{LLMSERVICE} ({label or Path(tree).name})"] = Target(tree)
    for given in args.interpreter:
        label, _, python = given.rpartition("=")
        if not label or shutil.which(python) is None:
            raise ValueError(f"--interpreter wants LABEL=PYTHON, PYTHON runnable: {given!r}")
        # This tree's sources, so that only the interpreter differs from "llmservice".
        targets[f"{LLMSERVICE} ({label})"] = Target(str(_TREE), python)
    if args.floor:
        targets.update(dict.fromkeys(FLOORS, Target()))
    return targets


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=4.0, help="per phase of a round")
    parser.add_argument("--plain-connections", type=int, default=16)
    parser.add_argument("--stream-connections", type=int, default=16)
    parser.add_argument("--chunks", type=int, default=64, help="SSE events per streamed reply")
    parser.add_argument("--sse-delay", type=float, default=0.002, help="seconds between events")
    parser.add_argument("--vllm-router", default=find_vllm_router())
    parser.add_argument(
        "--baseline",
        action="append",
        default=[],
        metavar="[LABEL=]TREE",
        help="the router of another source tree as one more target; repeatable",
    )
    parser.add_argument(
        "--interpreter",
        action="append",
        default=[],
        metavar="LABEL=PYTHON",
        help="this tree's router run by another Python as one more target; repeatable",
    )
    parser.add_argument(
        "--floor", action="store_true", help="also bench/asgi_floor.py and bench/raw_floor.py"
    )
    parser.add_argument(
        "--split", action="store_true", help="also the user-space and kernel parts apart"
    )
    return parser.parse_args(argv)


def main() -> None:
    args = arguments()
    if shutil.which("wrk") is None or shutil.which("taskset") is None:
        sys.exit("router_side_by_side needs wrk and taskset (apt-get install wrk util-linux)")
    try:
        targets = choose_targets(args)
    except ValueError as error:
        sys.exit(f"router_side_by_side: {error}")
    loads = [os.getloadavg()]
    try:
        with tempfile.TemporaryDirectory(prefix="router-side-by-side-") as tmp:
            results = run(targets, args, Path(tmp))
    except (subprocess.CalledProcessError, RuntimeError) as error:
        sys.exit(f"router_side_by_side: {error}")
    loads.append(os.getloadavg())
    for when, (one, five, fifteen) in zip(("before", "after"), loads, strict=True):
        print(f"load average {when}: {one:.2f} {five:.2f} {fifteen:.2f} (1, 5, 15 min)")
    print(table(results, next(iter(targets))))
    if args.split:
        print()
        print(split_table(results, next(iter(targets))))


if __name__ == "__main__":
    main()
