"""Instructions per request of the router, counted by callgrind: a figure that does not move.

CPU time per request (`router_bench.py`) moves by 10-40% between runs of the same code on a
shared machine, more than most changes to the request path move it. The instructions the
router executes in user space per request do not: callgrind (valgrind) counts them, the
same to 0.1% from run to run with a fixed hash seed, so a change of 1% shows. They leave
out the kernel (system calls) and the cost of cache misses, so they rank changes of Python
code and are no substitute for the time of a change that swaps C for Python.

For each target (the router of a source tree, or ``floor``: `bench/asgi_floor.py`), the
router runs under callgrind in front of `bench/fast_backend.py`; ``--warmup`` requests go
first, then the counters are zeroed, ``--requests`` non-streamed chat requests are sent
over ``--connections`` keep-alive connections (each with its own ``X-Session-ID`` from a
pool of 1,000, as in router_bench), and the count is dumped and divided by the requests.
Needs ``valgrind`` (``apt-get install valgrind``); each target takes about 40 s.

``--stream`` counts per streamed part instead: the requests ask for ``"stream": true`` and
the backend answers each with ``--chunks`` SSE events and ``[DONE]``, one event every
``--sse-delay`` seconds, slow enough that the router under callgrind reads each event on its
own, as it does at full speed; the count is divided by the parts relayed (the request's own
cost spread over them, as in router_bench's CPU per chunk).

    python -m bench.router_instructions . floor /tmp/before-tree
    python -m bench.router_instructions --stream --requests 200 --warmup 40 . /tmp/before-tree
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

from bench.router_bench import free_port, wait_http

FLOOR = "floor"
BODY = b'{"model":"m","stream":false,"messages":[{"role":"user","content":"hello"}]}'
STREAM_BODY = BODY.replace(b'"stream":false', b'"stream":true')
_LENGTH = re.compile(rb"(?i)\r\ncontent-length: *(\d+)")
_CHUNKED_END = b"\r\n0\r\n\r\n"


async def _client(port: int, requests: int, offset: int, stream: bool) -> None:
    body = STREAM_BODY if stream else BODY
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


async def _load(port: int, requests: int, connections: int, stream: bool) -> None:
    each = requests // connections
    await asyncio.gather(*(_client(port, each, i * each, stream) for i in range(connections)))


def _callgrind_total(out: Path) -> int:
    for line in out.read_text(errors="replace").splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"no total in {out}")


def count(target: str, backend_port: int, args: argparse.Namespace, tmp: Path) -> float:
    """Instructions per request (per streamed part with ``--stream``) of ``target`` (a
    source tree, or ``floor``)."""
    port = free_port()
    out = tmp / f"callgrind.{port}"
    valgrind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
    if target == FLOOR:
        command = ["-m", "bench.asgi_floor", "--backend-port", str(backend_port)]
        env = {**os.environ, "PYTHONHASHSEED": "0"}
    else:
        command = [
            "-m", "llmservice.cli", "router", "--served-model-name", "m", "--host", "127.0.0.1",
            "--static-backends", f"http://127.0.0.1:{backend_port}", "--drain-delay", "0",
            "--log-level", "warning",
        ]  # fmt: skip
        operator = str(Path(target, "operator").resolve())
        env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": operator}
    argv = [*valgrind, sys.executable, *command, "--port", str(port)]
    log = tmp / f"router.{port}.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(argv, env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", timeout=300)
        asyncio.run(_load(port, args.warmup, args.connections, args.stream))
        subprocess.run(["callgrind_control", "--zero", str(process.pid)], check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
        asyncio.run(_load(port, args.requests, args.connections, args.stream))
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
        return _callgrind_total(dumps[-1]) / (args.requests * parts)
    finally:
        process.terminate()
        process.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("targets", nargs="+", help=f"source trees, or {FLOOR!r}")
    parser.add_argument("--requests", type=int, default=1600)
    parser.add_argument("--warmup", type=int, default=400)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--stream", action="store_true", help="count per streamed part")
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
