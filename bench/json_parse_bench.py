"""How long a request body takes to parse, by parser, and what that does to /healthz.

Part 1 (in this process): the best of several parses of typical chat bodies and of
worst-case bodies at the router's largest allowed size (8 MiB by default), with the
standard library's json, orjson (when installed), msgspec decoding everything, and the
router's own `parse_body` (msgspec into a struct of the fields it reads, the rest skipped).

Part 2 (``--healthz``): a router in a subprocess (no replica: the bodies are parsed, then
answered 503), uploader processes posting worst-case bodies of the largest allowed size in
a loop, and this process asking /healthz every 10 ms on its own keep-alive connection;
prints the latency percentiles of /healthz.

    .venv/bin/python -m bench.json_parse_bench
    .venv/bin/python -m bench.json_parse_bench --healthz --uploaders 4 --seconds 20
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
from bench.router_bench import free_port, process, wait_http

from llmservice.router.config import DEFAULT_MAX_BODY_BYTES
from llmservice.router.payloads import MAX_ELEMENTS, parse_body

HEAD = b'{"model":"llama","messages":[{"role":"user","content":"x"}],"x":['


def _fill(prefix: bytes, unit: bytes, suffix: bytes, size: int, limit: int | None) -> bytes:
    """``unit`` repeated to fill ``size`` bytes, or ``limit`` commas when that comes first."""
    count = (size - len(prefix) - len(suffix)) // len(unit)
    if limit is not None:
        count = min(count, limit - 1 - (prefix + suffix).count(b","))
    return prefix + unit * count + suffix


def bodies(size: int) -> dict[str, bytes]:
    """Typical bodies, then worst cases: ``size`` bytes, and as dense as the router allows."""
    chat = {
        "model": "llama",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Summarise the following text. " * 10},
        ],
        "temperature": 0.7,
        "max_tokens": 256,
        "stream": True,
    }
    long = {"model": "llama", "messages": [{"role": "user", "content": "word " * 20_000}]}
    turns = [{"role": ("user", "assistant")[i % 2], "content": "a reply " * 40} for i in range(60)]
    out = {
        "chat, 0.5 KB": json.dumps(chat).encode(),
        "chat, 60 turns, 20 KB": json.dumps({"model": "llama", "messages": turns}).encode(),
        "chat, one 100 KB message": json.dumps(long).encode(),
        "one long string": _fill(
            b'{"model":"llama","messages":[{"role":"user","content":"', b"a", b'"}]}', size, None
        ),
        "large floats": _fill(HEAD, b"1.5e300,", b"1]}", size, None),
    }
    for limit, label in ((None, "full size"), (MAX_ELEMENTS, "at the element limit")):
        out |= {
            f"empty objects in a field, {label}": _fill(HEAD, b"{},", b"{}]}", size, limit),
            f"empty objects as messages, {label}": _fill(
                b'{"model":"llama","messages":[', b"{},", b"{}]}", size, limit
            ),
            f"small integers, {label}": _fill(HEAD, b"1,", b"1]}", size, limit),
            f"empty strings, {label}": _fill(HEAD, b'"",', b'""]}', size, limit),
            f"top-level keys, {label}": b'{"model":"llama",'
            + b",".join(b'"k%d":0' % i for i in range(min(size // 14, (limit or size) - 2)))
            + b"}",
        }
    return out


def best_ms(parse: Callable[[bytes], Any], raw: bytes, repeat: int) -> str:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        try:
            parse(raw)
        except Exception as error:  # a refusal is a result too
            return type(error).__name__
        best = min(best, time.perf_counter() - started)
    return f"{best * 1000:.4f}"


def parsers() -> dict[str, Callable[[bytes], Any]]:
    found: dict[str, Callable[[bytes], Any]] = {"json": json.loads}
    try:
        import orjson  # type: ignore[import-not-found,unused-ignore]

        found["orjson"] = orjson.loads
    except ImportError:
        print("(orjson is not installed: pip install orjson to measure it)")
    found["msgspec, everything"] = msgspec.json.decode
    found["router parse_body"] = parse_body
    return found


def parse_table(size: int) -> None:
    chosen = parsers()
    print("| body | bytes | " + " | ".join(f"{name} ms" for name in chosen) + " |")
    print("|---|---:|" + "---:|" * len(chosen))
    for name, raw in bodies(size).items():
        repeat = 200 if len(raw) < 1_000_000 else 5
        cells = [best_ms(parse, raw, repeat) for parse in chosen.values()]
        print(f"| {name} | {len(raw):,} | " + " | ".join(cells) + " |")


UPLOADER = """
import sys, socket, time
host, port, kind, seconds = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
sys.path.insert(0, sys.argv[5])
from bench.json_parse_bench import bodies
body = bodies(int(sys.argv[6]))[kind]
head = (f"POST /v1/chat/completions HTTP/1.1\\r\\nhost: x\\r\\ncontent-type: application/json"
        f"\\r\\ncontent-length: {len(body)}\\r\\n\\r\\n").encode()
end = time.monotonic() + seconds
sent = 0
while time.monotonic() < end:
    with socket.create_connection((host, port)) as sock:
        sock.sendall(head + body)
        answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 "), answer[:40]
        status = int(answer[9:12])
        assert status in (400, 413, 502, 503), answer[:200]  # parsed (or refused), no replica
        sent += 1
print(sent)
"""


@contextlib.contextmanager
def router(port: int, size: int) -> Iterator[subprocess.Popen[bytes]]:
    argv = [
        str(Path(sys.executable).parent / "llmservice"), "router",
        "--served-model-name", "llama", "--host", "127.0.0.1", "--port", str(port),
        "--static-backends", "http://127.0.0.1:9", "--max-body-bytes", str(size),
    ]  # fmt: skip
    with process(argv, None) as proc:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        yield proc


def healthz_while_parsing(uploaders: int, seconds: float, kind: str, size: int) -> None:
    port = free_port()
    root = str(Path(__file__).resolve().parent.parent)  # where `bench` imports from
    with router(port, size):
        argv = [sys.executable, "-c", UPLOADER, "127.0.0.1", str(port), kind]
        procs = [
            subprocess.Popen(
                [*argv, str(seconds), root, str(size)],
                stdout=subprocess.PIPE,
                env={**os.environ, "PYTHONPATH": root},
            )
            for _ in range(uploaders)
        ]
        latencies: list[float] = []
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        time.sleep(0.5)  # let the uploads start
        end = time.monotonic() + seconds - 1
        while time.monotonic() < end:
            started = time.perf_counter()
            connection.request("GET", "/healthz")
            response = connection.getresponse()
            response.read()
            latencies.append(time.perf_counter() - started)
            assert response.status == 200
            time.sleep(0.01)
        uploads = sum(int(proc.communicate()[0] or 0) for proc in procs)
    latencies.sort()
    ms = [x * 1000 for x in latencies]
    p50 = statistics.median(ms)
    p99 = ms[int(len(ms) * 0.99) - 1]
    print(
        f"| {kind} | {uploaders} | {uploads} | {len(ms)} | {p50:.1f} | {p99:.1f} | {ms[-1]:.1f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=DEFAULT_MAX_BODY_BYTES)
    parser.add_argument("--healthz", action="store_true", help="part 2: /healthz latency")
    parser.add_argument("--uploaders", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    if not args.healthz:
        parse_table(args.size)
        return
    print("| worst-case body | uploaders | bodies parsed | probes | p50 ms | p99 ms | max ms |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for kind in (
        "chat, 0.5 KB",  # the baseline: no large body at all
        "one long string",
        "small integers, at the element limit",
        "empty objects as messages, at the element limit",
        "small integers, full size",
    ):
        healthz_while_parsing(args.uploaders, args.seconds, kind, args.size)


if __name__ == "__main__":
    main()
