"""router_bench's floors (with and without ASGI) forward answers as the backend gives them,
over sockets."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running(*argv: str, port: int) -> Iterator[str]:
    process = subprocess.Popen([sys.executable, "-m", *argv, "--port", str(port)])
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url + "/health", timeout=1.0)
                break
            except httpx.TransportError:
                assert process.poll() is None, f"{argv[0]} exited"
                assert time.monotonic() < deadline, f"{argv[0]} did not start"
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(10)


@pytest.mark.parametrize("floor_module", ["bench.asgi_floor", "bench.raw_floor"])
def test_the_floor_relays_plain_and_streamed_answers_unchanged(floor_module: str) -> None:
    backend_port = free_port()
    with (
        running("bench.fast_backend", "--chunks", "3", port=backend_port) as backend,
        running(floor_module, "--backend-port", str(backend_port), port=free_port()) as floor,
        httpx.Client() as client,  # one keep-alive connection for every request
    ):
        for body in (CHAT, {**CHAT, "stream": True}, CHAT):
            direct = httpx.post(backend + "/v1/chat/completions", json=body)
            relayed = client.post(floor + "/v1/chat/completions", json=body)
            assert relayed.status_code == direct.status_code == 200
            assert relayed.headers["content-type"] == direct.headers["content-type"]
            assert relayed.content == direct.content
            if body.get("stream"):
                assert b"data: [DONE]" in relayed.content
                assert relayed.headers["transfer-encoding"] == "chunked"
        assert client.get(floor + "/health").text == "ok"
