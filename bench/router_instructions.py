"""Instructions per request of the router, counted by callgrind: a figure that does not move.

CPU time per request (`router_bench.py`) moves by 10-40% between runs of the same code on a
shared machine, more than most changes to the request path move it. The instructions the
router executes in user space per request do not: callgrind (valgrind) counts them, the
same to 0.1% from run to run with a fixed hash seed, so a change of 1% shows. They leave
out the kernel (system calls) and the cost of cache misses, so they rank changes of Python
code and are no substitute for the time of a change that swaps C for Python.

For each target (the router of a source tree, ``floor``: `bench/asgi_floor.py`,
``raw-floor``: `bench/raw_floor.py`, or
``vllm-router``: the Rust router with ``--policy consistent_hash``, on PATH or in
/tmp/vllm-router-venv, or ``--vllm-router PATH``), the router runs under callgrind in front
of `bench/fast_backend.py`; ``--warmup`` requests go first, then the counters are zeroed,
``--requests`` non-streamed chat requests are sent over ``--connections`` keep-alive
connections (each with its own ``X-Session-ID`` from a pool of 1,000, as in router_bench),
and the count is dumped and divided by the requests.
Needs ``valgrind`` (``apt-get install valgrind``); each target takes about 40 s.

``--chat-body`` sends router_bench's chat prompt (about 14 KB: a system prompt and a long
user message) instead of a one-word one: what a request's body costs.

``--stream`` counts per streamed part instead: the requests ask for ``"stream": true`` and
the backend answers each with ``--chunks`` SSE events and ``[DONE]``, one event every
``--sse-delay`` seconds, slow enough that the router under callgrind reads each event on its
own, as it does at full speed; the count is divided by the parts relayed (the request's own
cost spread over them, as in router_bench's CPU per chunk).

    python -m bench.router_instructions . floor raw-floor /tmp/before-tree
    python -m bench.router_instructions --stream --requests 200 --warmup 40 . /tmp/before-tree
    python -m bench.router_instructions --chat-body . vllm-router
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.error
from pathlib import Path

from bench import router_bench
from bench.router_bench import CHAT, HELLO, find_vllm_router, free_port, router_argv, wait_http

FLOOR = "floor"
RAW_FLOOR = "raw-floor"
# This tool's names for router_bench's floors.
_FLOOR_KINDS = {FLOOR: router_bench.FLOOR, RAW_FLOOR: router_bench.RAW_FLOOR}
VLLM_ROUTER = "vllm-router"
_BODY = '{"model":"m","stream":%s,"messages":%s}'
_LENGTH = re.compile(rb"(?i)\r\ncontent-length: *(\d+)")
_CHUNKED_END = b"\r\n0\r\n\r\n"


def request_body(stream: bool, chat: bool) -> bytes:
    """A chat request's body: streamed or not, with the one-word or the 14 KB prompt."""
    return (_BODY % ("true" if stream else "false", CHAT if chat else HELLO)).encode()


async def _client(port: int, requests: int, offset: int, body: bytes, stream: bool) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for n in range(offset, offset + requests):
            writer.write(
                b"POST /v1/chat/completions HTTP/1.1\r\nhost: bench\r\n"
                b"content-type: application/json\r\nx-session-id: session-%d\r\n"
                b"content-length: %d\r\n\r\n%s" % (n % 1000, len(body), body)
            )
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"the router answered {head.splitlines()[0]!r}")
            if stream:  # the SSE parts end with [DONE]: the last chunk follows it
                await reader.readuntil(b"data: [DONE]\n\n" + _CHUNKED_END)
                continue
            length = _LENGTH.search(head)
            if length is None:
                raise RuntimeError("the answer has no content-length")
            await reader.readexactly(int(length.group(1)))
    finally:
        writer.close()


async def _load(port: int, requests: int, args: argparse.Namespace) -> None:
    each = requests // args.connections
    body = request_body(args.stream, args.chat_body)
    await asyncio.gather(
        *(_client(port, each, i * each, body, args.stream) for i in range(args.connections))
    )


def _callgrind_total(out: Path) -> int:
    for line in out.read_text(errors="replace").splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"no total in {out}")


def count(target: str, backend_port: int, args: argparse.Namespace, tmp: Path) -> float:
    """Instructions per request (per streamed part with ``--stream``) of ``target`` (a
    source tree, ``floor`` or ``vllm-router``)."""
    port = free_port()
    out = tmp / f"callgrind.{port}"
    valgrind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
    ready = f"http://127.0.0.1:{port}/readyz"
    if target in _FLOOR_KINDS:
        backend = f"http://127.0.0.1:{backend_port}"
        command = router_argv(_FLOOR_KINDS[target], port, backend, None)
        env = {**os.environ, "PYTHONHASHSEED": "0"}
    elif target == VLLM_ROUTER:
        if not args.vllm_router:
            raise RuntimeError("vllm-router not found: give --vllm-router PATH")
        backend = f"http://127.0.0.1:{backend_port}"
        command = router_argv(VLLM_ROUTER, port, backend, args.vllm_router)
        env = dict(os.environ)
        ready = f"http://127.0.0.1:{port}/v1/models"
    else:
        command = [
            sys.executable, "-m", "llmservice.cli", "router", "--served-model-name", "m",
            "--host", "127.0.0.1", "--static-backends", f"http://127.0.0.1:{backend_port}",
            "--drain-delay", "0", "--log-level", "warning", "--port", str(port),
        ]  # fmt: skip
        operator = str(Path(target, "operator").resolve())
        env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": operator}
    argv = [*valgrind, *command]
    log = tmp / f"router.{port}.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(argv, env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        wait_http(ready, timeout=300)
        asyncio.run(_load(port, args.warmup, args))
        subprocess.run(["callgrind_control", "--zero", str(process.pid)], check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
        asyncio.run(_load(port, args.requests, args))
        subprocess.run(["callgrind_control", "--dump", str(process.pid)], check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
        dumps = sorted(tmp.glob(f"callgrind.{port}.*"), key=lambda p: p.stat().st_mtime)
        deadline = time.monotonic() + 30
        while not dumps and time.monotonic() < deadline:
            time.sleep(0.2)
            dumps = sorted(tmp.glob(f"callgrind.{port}.*"), key=lambda p: p.stat().st_mtime)
        if not dumps:
            raise RuntimeError(f"callgrind wrote no dump; see {log}")
        parts = args.chunks + 1 if args.stream else 1  # the events and [DONE]
        requests: int = args.requests
        return _callgrind_total(dumps[-1]) / (requests * parts)
    finally:
        process.terminate()
        process.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "targets", nargs="+", help=f"source trees, {FLOOR!r}, {RAW_FLOOR!r} or {VLLM_ROUTER!r}"
    )
    parser.add_argument("--requests", type=int, default=1600)
    parser.add_argument("--warmup", type=int, default=400)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--stream", action="store_true", help="count per streamed part")
    parser.add_argument(
        "--chat-body", action="store_true", help="send the 14 KB chat prompt, not one word"
    )
    parser.add_argument("--vllm-router", default=find_vllm_router())
    parser.add_argument("--chunks", type=int, default=64, help="SSE events per streamed reply")
    parser.add_argument("--sse-delay", type=float, default=0.01, help="seconds between events")
    args = parser.parse_args()
    backend_port = free_port()
    stream_args = ["--chunks", str(args.chunks), "--sse-delay", str(args.sse_delay)]
    backend = subprocess.Popen(
        [sys.executable, "-m", "bench.fast_backend", "--port", str(backend_port), *stream_args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_http(f"http://127.0.0.1:{backend_port}/health")
        with tempfile.TemporaryDirectory(prefix="router-instructions-") as tmp:
            unit = "streamed part" if args.stream else "request"
            print(f"| target | instructions per {unit} |")
            print("|---|---:|")
            for target in args.targets:
                per_request = count(target, backend_port, args, Path(tmp))
                print(f"| {target} | {per_request:,.0f} |", flush=True)
    except (urllib.error.URLError, RuntimeError) as error:
        sys.exit(f"router_instructions: {error}")
    finally:
        backend.terminate()
        backend.wait(10)


if __name__ == "__main__":
    main()
