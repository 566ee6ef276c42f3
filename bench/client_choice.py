"""Which pooled HTTP client the router uses upstream: httpx, aiohttp, or its own pool.

Each client, on one core, sends POSTs at concurrency 32 for a few seconds to the minimal
backend (bench/fast_backend.py, on the other core) and we count completed requests per
second and the client's CPU time per request. The router uses the winner
(`llmservice.router.upstream.Pool`); bench/README.md records the numbers.

    python -m bench.client_choice --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import aiohttp
import httpx
import uvloop

from llmservice.router.upstream import Pool

BODY = b'{"model":"bench","messages":[{"role":"user","content":"hi"}]}'
HEADERS = {"content-type": "application/json"}


async def _drive(
    send: Callable[[], Awaitable[None]], concurrency: int, seconds: float
) -> tuple[float, float]:
    """(requests per second, CPU microseconds per request)."""
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await send()
            done += 1

    start, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.perf_counter() - start), (time.process_time() - cpu) / done * 1e6


async def bench_httpx(url: str, concurrency: int, seconds: float) -> tuple[float, float]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def send() -> None:
            response = await client.post(url, content=BODY, headers=HEADERS)
            await response.aread()

        return await _drive(send, concurrency, seconds)


async def bench_aiohttp(url: str, concurrency: int, seconds: float) -> tuple[float, float]:
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:

        async def send() -> None:
            async with session.post(url, data=BODY, headers=HEADERS) as response:
                await response.read()

        return await _drive(send, concurrency, seconds)


async def bench_pool(url: str, concurrency: int, seconds: float) -> tuple[float, float]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    head = (
        f"POST {parts.path} HTTP/1.1\r\nhost: {host}:{port}\r\ncontent-type: application/json"
    ).encode()
    async with Pool(limit=concurrency, connect_timeout=5) as pool:

        async def send() -> None:
            response = await pool.request(host, port, head, BODY)
            while await response.read_chunk():
                pass

        return await _drive(send, concurrency, seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--port", type=int, default=18101)
    args = parser.parse_args()
    backend = subprocess.Popen(
        ["taskset", "-c", "1", sys.executable, "-m", "bench.fast_backend", "--port", str(args.port)]
    )
    try:
        time.sleep(1.0)
        os.sched_setaffinity(0, {0})
        url = f"http://127.0.0.1:{args.port}/v1/chat/completions"
        print(f"client    req/s   CPU us/req   (concurrency {args.concurrency}, one core)")
        for name, fn in (("httpx", bench_httpx), ("aiohttp", bench_aiohttp), ("pool", bench_pool)):
            rate, cpu = uvloop.run(fn(url, args.concurrency, args.seconds))
            print(f"{name:8s} {rate:7.0f} {cpu:10.1f}")
    finally:
        backend.terminate()
        backend.wait()


if __name__ == "__main__":
    main()
