"""Success rate and upstream attempts under injected engine faults, through the router.

Two scenarios, each ``--requests`` non-streamed chat requests (a different X-Session-ID per
request from a pool of 1,000) at concurrency ``--concurrency`` through one `llmservice
router` process over 4 fault-injecting backends, all on loopback:

- ``mixed``: 20% of the attempts are faulted, evenly: connection refused, reset before the
  response headers, 502, 503 (5% each).
- ``dead``: one replica is dead (nothing listens on its port) and the other three reset 20%
  of the attempts before the response headers.

Faults: every backend answers with ``Connection: close`` in ``mixed`` so that each attempt
opens a connection, and closes its listening socket 1 ms out of every 40 ms (the replicas'
windows one after the other: one replica refuses at a time), so connects in those windows are
refused (connections waiting in the accept queue when it closes are reset). Resets (RST,
before any response byte), 502 and 503 are drawn per request. The backends run in one
process on the load generator's core; the router is pinned to the other core (``taskset``).

Printed per scenario and retry setting: the success rate (HTTP 200), the client-side
errors by status, and from the router's metrics the upstream attempts per request by
outcome, the retries, the failed attempts not retried and the ejections.

    python -m bench.fault_bench --requests 10000 --retries 2,4,5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import struct
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httptools
import uvloop
from bench.router_bench import free_port, process, wait_http
from prometheus_client.parser import text_string_to_metric_families

ROUTER_CORE = "0"
LOAD_CORE = "1"

_BODY = json.dumps(
    {
        "id": "cmpl-fault",
        "object": "chat.completion",
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }
).encode()


@dataclass(frozen=True)
class Faults:
    """Per-request fault probabilities, and the share of time the listener is closed."""

    reset: float = 0.0
    bad_gateway: float = 0.0
    unavailable: float = 0.0
    down: float = 0.0
    close: bool = False  # answer with Connection: close (every attempt connects)


def _answer(status: int, reason: bytes, body: bytes, close: bool) -> bytes:
    return (
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n"
        % (status, reason, len(body), b"connection: close\r\n" if close else b"")
    ) + body


class _Engine(asyncio.Protocol):
    def __init__(self, faults: Faults, rng: random.Random) -> None:
        self.faults = faults
        self.rng = rng
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.close()

    def on_message_complete(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        faults, close = self.faults, self.faults.close
        if self.parser.get_method() == b"GET":  # the router's health probe
            transport.write(_answer(200, b"OK", b"{}", close))
        else:
            draw = self.rng.random()
            if draw < faults.reset:
                sock = transport.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                transport.abort()
                return
            draw -= faults.reset
            if draw < faults.bad_gateway:
                transport.write(_answer(502, b"Bad Gateway", b'{"error":"502"}', close))
            elif draw - faults.bad_gateway < faults.unavailable:
                transport.write(_answer(503, b"Unavailable", b'{"error":"503"}', close))
            else:
                transport.write(_answer(200, b"OK", _BODY, close))
        if close:
            transport.close()


async def _serve_one(port: int, faults: Faults, seed: int, replicas: int) -> None:
    loop = asyncio.get_running_loop()
    rng = random.Random(seed)

    def factory() -> _Engine:
        return _Engine(faults, rng)

    server = await loop.create_server(factory, "127.0.0.1", port, backlog=1024)
    if not faults.down:
        await server.serve_forever()
        return
    # Each replica's window at its own phase of the cycle: one replica refuses at a time.
    cycle = 0.04
    started = loop.time() + seed * cycle / replicas
    n = 0
    while True:
        n += 1
        await asyncio.sleep(max(0.0, started + n * cycle - loop.time()))
        server.close()  # connects are refused until it listens again
        await asyncio.sleep(cycle * faults.down)
        server = await loop.create_server(factory, "127.0.0.1", port, backlog=1024)


async def serve(ports: list[int], faults: Faults) -> None:
    await asyncio.gather(
        *(_serve_one(port, faults, seed, len(ports)) for seed, port in enumerate(ports))
    )


@dataclass
class Result:
    statuses: Counter[int] = field(default_factory=Counter)
    attempts: dict[str, float] = field(default_factory=dict)
    retries: dict[str, float] = field(default_factory=dict)
    refused: dict[str, float] = field(default_factory=dict)
    ejections: float = 0.0
    seconds: float = 0.0


async def load(url: str, requests: int, concurrency: int, result: Result) -> None:
    import aiohttp  # the load generator's client; a test dependency

    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    counter = iter(range(requests))
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as client:

        async def worker() -> None:
            for n in counter:
                headers = {"content-type": "application/json", "x-session-id": f"s{n % 1000}"}
                try:
                    async with client.post(url, data=body, headers=headers) as response:
                        await response.read()
                        result.statuses[response.status] += 1
                except aiohttp.ClientError:
                    result.statuses[0] += 1

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        result.seconds = time.monotonic() - started


def scrape(url: str, result: Result) -> None:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:  # noqa: S310
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "llmservice_router_upstream_attempts_total":
                result.attempts[sample.labels["outcome"]] = sample.value
            elif sample.name == "llmservice_router_retries_total":
                result.retries[sample.labels["reason"]] = sample.value
            elif sample.name == "llmservice_router_retries_refused_total":
                result.refused[sample.labels["reason"]] = sample.value
            elif sample.name == "llmservice_router_ejections_total":
                result.ejections += sample.value


SCENARIOS = {
    "mixed": (4, Faults(reset=0.05, bad_gateway=0.05, unavailable=0.05, down=0.025, close=True)),
    "dead": (3, Faults(reset=0.2)),  # plus one port where nothing listens
}


def run(scenario: str, retries: int, args: argparse.Namespace, logdir: Path) -> Result:
    live, faults = SCENARIOS[scenario]
    ports = [free_port() for _ in range(live)]
    dead = [] if live == 4 else [free_port()]
    backend = [
        sys.executable, "-m", "bench.fault_bench", "backend",
        "--ports", ",".join(map(str, ports)),
        "--reset", str(faults.reset), "--bad-gateway", str(faults.bad_gateway),
        "--unavailable", str(faults.unavailable), "--down", str(faults.down),
        *(["--close"] if faults.close else []),
    ]  # fmt: skip
    router_port = free_port()
    backends = ",".join(f"http://127.0.0.1:{port}" for port in ports + dead)
    router = [
        sys.executable, "-m", "llmservice.cli", "router", "--served-model-name", "m",
        "--host", "127.0.0.1", "--port", str(router_port), "--static-backends", backends,
        "--retries", str(retries), "--drain-delay", "0", "--log-level", "warning",
        *([] if args.access_log else ["--no-access-log"]),
    ]  # fmt: skip
    result = Result()
    with (
        process(backend, LOAD_CORE, logdir / f"backend-{scenario}.log"),
        process(router, ROUTER_CORE, logdir / f"router-{scenario}-{retries}.log"),
    ):
        url = f"http://127.0.0.1:{router_port}"
        wait_http(url + "/readyz")
        uvloop.run(load(url + "/v1/chat/completions", args.requests, args.concurrency, result))
        scrape(url, result)
    return result


def report(scenario: str, retries: int, result: Result, requests: int) -> str:
    ok = result.statuses[200]
    attempts = sum(result.attempts.values())
    errors = ", ".join(f"{code}: {n}" for code, n in sorted(result.statuses.items()) if code != 200)
    outcomes = ", ".join(f"{k} {int(v)}" for k, v in sorted(result.attempts.items()))
    refused = ", ".join(f"{k} {int(v)}" for k, v in sorted(result.refused.items()))
    return (
        f"| {scenario} | {retries} | {ok / requests:.4%} | {errors or '-'} | "
        f"{attempts / requests:.3f} | {outcomes} | {int(sum(result.retries.values()))} | "
        f"{refused or '-'} | {int(result.ejections)} | {requests / result.seconds:.0f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command")
    backend = sub.add_parser("backend", help="run fault-injecting backends (used by the bench)")
    backend.add_argument("--ports", required=True)
    backend.add_argument("--reset", type=float, default=0.0)
    backend.add_argument("--bad-gateway", type=float, default=0.0)
    backend.add_argument("--unavailable", type=float, default=0.0)
    backend.add_argument("--down", type=float, default=0.0)
    backend.add_argument("--close", action="store_true")
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--access-log", action="store_true", help="keep the router's log")
    parser.add_argument("--logdir", type=Path, default=None, help="where the logs go")
    parser.add_argument(
        "--retries", default="2,4", help="router --retries values to run, comma-separated"
    )
    args = parser.parse_args()
    if args.command == "backend":
        faults = Faults(args.reset, args.bad_gateway, args.unavailable, args.down, args.close)
        uvloop.run(serve([int(p) for p in args.ports.split(",")], faults))
        return
    print(
        "| scenario | --retries | success | failures by status | attempts/request |"
        " attempts by outcome | retries | retries refused | ejections | req/s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="fault-bench-") as tmp:
        logdir = args.logdir or Path(tmp)
        for scenario in SCENARIOS:
            for retries in (int(r) for r in args.retries.split(",")):
                result = run(scenario, retries, args, logdir)
                print(report(scenario, retries, result, args.requests), flush=True)


if __name__ == "__main__":
    main()
