"""The router's memory under hostile clients: peak RSS with N concurrent worst-case requests.

For each pattern a fresh router (``llmservice router`` before bench/fast_backend.py) gets
``--connections`` concurrent connections, each doing the worst a client can:

- ``many-headers``: a request with 10,000 headers (about 150 KB of head);
- ``huge-header``: a request with one 16 MB header value, written until the router closes;
- ``slow-headers``: a request head sent a byte a second, for longer than the header timeout;
- ``max-body``: a chat request whose body is the largest allowed (``--max-body-bytes``).

The router's RSS is sampled every 20 ms from /proc while the pattern runs; the table gives
its RSS at rest, the peak, and how the connections ended (status, or closed). With
``--unbounded`` the router runs with limits so high that they never apply, which is how it
behaved before it had them. Needs only the project's virtualenv.

    python -m bench.client_limits_bench --connections 100
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

from bench.router_bench import free_port, process, wait_http

HEAD = b"POST /v1/chat/completions HTTP/1.1\r\nHost: router\r\nContent-Type: application/json\r\n"
UNBOUNDED = [
    "--max-header-count", "10000000", "--max-header-bytes", "1000000000",
    "--header-timeout", "100000", "--max-buffered-body-bytes", "1000000000000",
]  # fmt: skip


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


class Sampler:
    """The largest RSS of a process, sampled in a thread until stopped."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = rss_kib(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            with contextlib.suppress(OSError):
                self.peak = max(self.peak, rss_kib(self.pid))

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def outcome(reader: asyncio.StreamReader) -> str:
    """The status the router answered with, or "closed"."""
    try:
        line = await reader.readline()
    except ConnectionError:
        return "closed"
    return line.split(b" ")[1].decode() if line.startswith(b"HTTP/1.1 ") else "closed"


async def many_headers(port: int, args: argparse.Namespace) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = HEAD + b"".join(b"X-Header-%05d: value\r\n" % i for i in range(10_000))
    writer.write(head + b"Content-Length: 2\r\n\r\n{}")
    with contextlib.suppress(ConnectionError):
        await writer.drain()
    result = await outcome(reader)
    writer.close()
    return result


async def huge_header(port: int, args: argparse.Namespace) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answer = asyncio.ensure_future(outcome(reader))
    piece = b"a" * 65_536
    try:
        writer.write(HEAD + b"X-Huge: ")
        for _ in range(16 * 1024 * 1024 // len(piece)):
            if answer.done():
                break
            writer.write(piece)
            await writer.drain()
        else:
            writer.write(b"\r\nContent-Length: 2\r\n\r\n{}")
    except ConnectionError:
        pass
    result = await answer
    writer.close()
    return result


async def slow_headers(port: int, args: argparse.Namespace) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answer = asyncio.ensure_future(outcome(reader))
    request = HEAD + b"X-Slow: " + b"s" * 64 + b"\r\nContent-Length: 2\r\n\r\n{}"
    try:
        for byte in request[: int(args.slow_seconds)]:
            if answer.done():
                break
            writer.write(bytes([byte]))
            await asyncio.wait([answer], timeout=1.0)
    except ConnectionError:
        pass
    if not answer.done():
        answer.cancel()
        writer.close()
        return f"open after {args.slow_seconds:g} s"
    result = await answer
    writer.close()
    return result


async def max_body(port: int, args: argparse.Namespace) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    filler = args.max_body_bytes - len(b'{"model":"m","messages":[{"role":"user","content":""}]}')
    message = {"role": "user", "content": "a" * filler}
    body = json.dumps({"model": "m", "messages": [message]}, separators=(",", ":")).encode()
    writer.write(HEAD + b"Content-Length: %d\r\n\r\n" % len(body) + body)
    with contextlib.suppress(ConnectionError):
        await writer.drain()
    result = await outcome(reader)
    writer.close()
    return result


PATTERNS: dict[str, Callable[[int, argparse.Namespace], Awaitable[str]]] = {
    "many-headers": many_headers,
    "huge-header": huge_header,
    "slow-headers": slow_headers,
    "max-body": max_body,
}


async def run_pattern(name: str, port: int, args: argparse.Namespace) -> collections.Counter[str]:
    attack = PATTERNS[name]
    results = await asyncio.gather(
        *(attack(port, args) for _ in range(args.connections)), return_exceptions=True
    )
    return collections.Counter(r if isinstance(r, str) else type(r).__name__ for r in results)


@contextlib.contextmanager
def router(port: int, backend: str, args: argparse.Namespace) -> Iterator[subprocess.Popen[bytes]]:
    argv = [
        sys.executable, "-m", "llmservice.cli", "router", "--served-model-name", "m",
        "--host", "127.0.0.1", "--port", str(port), "--static-backends", backend,
        "--drain-delay", "0", "--log-level", "warning", "--no-access-log",
        "--max-body-bytes", str(args.max_body_bytes),
        *(UNBOUNDED if args.unbounded else []),
    ]  # fmt: skip
    with process(argv, None, args.log) as proc:
        wait_http(f"http://127.0.0.1:{port}/readyz")
        yield proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--max-body-bytes", type=int, default=8_388_608)
    parser.add_argument("--slow-seconds", type=float, default=15.0)
    parser.add_argument("--patterns", default=",".join(PATTERNS))
    parser.add_argument("--unbounded", action="store_true", help="limits that never apply")
    parser.add_argument("--log", type=Path, default=None, help="the router's log file")
    args = parser.parse_args()
    backend_port = free_port()
    backend_argv = [sys.executable, "-m", "bench.fast_backend", "--port", str(backend_port)]
    rows = []
    with process(backend_argv, None):
        backend = f"http://127.0.0.1:{backend_port}"
        wait_http(f"{backend}/health")
        for name in args.patterns.split(","):
            port = free_port()
            with router(port, backend, args) as proc:
                rest = rss_kib(proc.pid)
                started = time.monotonic()
                with Sampler(proc.pid) as sampler:
                    outcomes = asyncio.run(run_pattern(name, port, args))
                took = time.monotonic() - started
                alive = proc.poll() is None
            ended = ", ".join(f"{count}x {what}" for what, count in sorted(outcomes.items()))
            rows.append(
                f"| {name} | {args.connections} | {rest / 1024:.0f} | {sampler.peak / 1024:.0f}"
                f" | {took:.1f} | {ended} | {'yes' if alive else 'NO'} |"
            )
            print(rows[-1], flush=True)
    mode = "unbounded (limits that never apply)" if args.unbounded else "default limits"
    print(f"\nRouter with {mode}:\n")
    print("| pattern | connections | RSS at rest (MiB) | peak RSS (MiB) | seconds | ended as |"
          " router alive |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
