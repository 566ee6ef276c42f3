"""How cheap is the simulator? Streamed chunks per CPU-second, and CPU per plain request.

Starts `llmservice sim` in a subprocess, drives it from this process with a minimal
HTTP/1.1 client on raw sockets (so the client costs as little as possible and runs on the
other core), and reads the server's CPU time from /proc. Two phases:

1. streaming: `--concurrency` connections each stream `--max-tokens` tokens per request, over
   and over for `--seconds`; reports chunks/s of wall time and chunks per server CPU-second
   (the figure to compare with the 8,000 target).
2. non-streaming: the same connections send requests with `max_tokens=16`; reports
   requests/s and server CPU per request.

By default the timing profile is `instant` (no model time), so the server is CPU-bound and
the figures measure the simulator itself. Pass `--profile 8b-h100` to see a realistic load.

    .venv/bin/python bench/sim_throughput.py [--seconds 10] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import uvloop

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


@dataclass
class Totals:
    requests: int = 0
    chunks: int = 0


class Connection:
    """One keep-alive HTTP/1.1 connection that posts JSON and reads the whole reply."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 22)
        return cls(reader, writer)

    async def post(self, path: str, body: bytes) -> bytes:
        head = (
            f"POST {path} HTTP/1.1\r\nhost: sim\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n"
        ).encode()
        self.writer.write(head + body)
        headers = await self.reader.readuntil(b"\r\n\r\n")
        if b"content-length:" in headers.lower():
            length = int(headers.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            return await self.reader.readexactly(length)
        # Chunked: read until the terminating zero-length chunk.
        return await self.reader.readuntil(b"\r\n0\r\n\r\n")

    def close(self) -> None:
        self.writer.close()


async def drive(port: int, concurrency: int, seconds: float, body: bytes, stream: bool) -> Totals:
    totals = Totals()
    stop_at = time.monotonic() + seconds

    async def worker() -> None:
        conn = await Connection.open(port)
        try:
            while time.monotonic() < stop_at:
                reply = await conn.post("/v1/completions", body)
                totals.requests += 1
                if stream:
                    totals.chunks += reply.count(b"data: {")
        finally:
            conn.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return totals


async def wait_ready(port: int) -> None:
    for _ in range(200):
        try:
            conn = await Connection.open(port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        conn.close()
        return
    raise RuntimeError("the simulator did not start")


async def bench(args: argparse.Namespace, port: int, pid: int) -> dict[str, float]:
    await wait_ready(port)
    stream_body = json.dumps(
        {"prompt": "benchmark " * 20, "max_tokens": args.max_tokens, "stream": True}
    ).encode()
    plain_body = json.dumps({"prompt": "benchmark " * 20, "max_tokens": 16}).encode()
    # Warm up, then measure each phase on its own.
    await drive(port, args.concurrency, 1.0, stream_body, stream=True)
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    streamed = await drive(port, args.concurrency, args.seconds, stream_body, stream=True)
    cpu1, t1 = cpu_seconds(pid), time.monotonic()
    plain = await drive(port, args.concurrency, args.seconds, plain_body, stream=False)
    cpu2, t2 = cpu_seconds(pid), time.monotonic()
    return {
        "stream_chunks": streamed.chunks,
        "stream_chunks_per_s": streamed.chunks / (t1 - t0),
        "stream_server_cpu_s": cpu1 - cpu0,
        "stream_chunks_per_cpu_s": streamed.chunks / max(cpu1 - cpu0, 1e-9),
        "plain_requests": plain.requests,
        "plain_requests_per_s": plain.requests / (t2 - t1),
        "plain_server_cpu_ms_per_request": 1000 * (cpu2 - cpu1) / max(plain.requests, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--profile", default="instant")
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument("--max-num-seqs", type=int, default=256)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        port_file = Path(tmp) / "port"
        command = [
            sys.executable, "-m", "llmservice.cli", "sim", "bench-model",
            "--host", "127.0.0.1", "--port", "0", "--sim-port-file", str(port_file),
            "--sim-profile", args.profile, "--sim-time-scale", str(args.time_scale),
            "--max-num-seqs", str(args.max_num_seqs),
        ]  # fmt: skip
        with subprocess.Popen(command, stderr=subprocess.DEVNULL) as proc:
            try:
                deadline = time.monotonic() + 30
                while not port_file.exists():
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("the simulator did not start")
                    time.sleep(0.05)
                port = int(port_file.read_text())
                results = uvloop.run(bench(args, port, proc.pid))
            finally:
                proc.terminate()
                proc.wait(30)
    settings = {
        k: getattr(args, k)
        for k in ("seconds", "concurrency", "max_tokens", "profile", "time_scale")
    }
    print(json.dumps({"settings": settings, "results": results}, indent=2))
    print(
        f"streaming: {results['stream_chunks_per_s']:,.0f} chunks/s, "
        f"{results['stream_chunks_per_cpu_s']:,.0f} chunks per server CPU-second; "
        f"non-streaming: {results['plain_requests_per_s']:,.0f} req/s, "
        f"{results['plain_server_cpu_ms_per_request']:.2f} ms server CPU per request"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
