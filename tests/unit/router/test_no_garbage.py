"""Requests leave no reference cycles behind: the garbage collector's passes cost milliseconds.

A reference cycle per request (an object that points back at its owner) frees nothing until
the collector runs, and the router runs it every `GC_THRESHOLD` allocations: at thousands of
requests a second that is a pause of milliseconds in every request's tail.
"""

from __future__ import annotations

import asyncio
import gc
import json

from .backends import FakeBackend, Mode
from .conftest import CHAT, RouterServer, config, run

REQUESTS = 200


async def _exchange(port: int, body: dict[str, object]) -> bytes:
    data = json.dumps(body).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nconnection: close\r\n"
        b"content-type: application/json\r\ncontent-length: "
        + str(len(data)).encode()
        + b"\r\n\r\n"
        + data
    )
    answer = await reader.read()
    writer.close()
    await writer.wait_closed()
    return answer


def _garbage_of(mode: Mode, body: dict[str, object]) -> int:
    """Objects the collector finds after `REQUESTS` requests (past a warm-up)."""
    found: list[int] = []

    async def scenario() -> None:
        async with FakeBackend(mode) as backend, RouterServer(config(backend.url)) as router:
            for _ in range(20):  # warm-up: caches, pools, lazily made objects
                await _exchange(router.port, body)
            gc.collect()
            gc.disable()
            try:
                for _ in range(REQUESTS):
                    assert (await _exchange(router.port, body)).startswith(b"HTTP/1.1 200")
                found.append(gc.collect())
            finally:
                gc.enable()

    run(scenario())
    return found[0]


def test_a_json_request_leaves_no_cycles() -> None:
    assert _garbage_of(Mode.JSON, CHAT) < REQUESTS // 4


def test_a_streamed_request_leaves_no_cycles() -> None:
    assert _garbage_of(Mode.STREAM, {**CHAT, "stream": True}) < REQUESTS // 4
