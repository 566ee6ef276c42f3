"""The head of an answer with a Content-Length goes out with its first body part."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from llmservice.router.coalesce import HeldHead, hold_heads

from .conftest import RouterServer, config, run


class RecordingTransport:
    """Records every write (each one a system call on a real transport)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[bytes, ...]]] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.calls.append(("write", (data,)))

    def writelines(self, parts: tuple[bytes, ...]) -> None:
        self.calls.append(("writelines", tuple(parts)))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def cycle(method: str = "POST") -> Any:
    transport = RecordingTransport()
    held = SimpleNamespace(chunked_encoding=None, scope={"method": method}, transport=transport)
    hold_heads(held)  # type: ignore[arg-type]
    return held, transport


def test_a_content_length_head_is_written_with_the_body_in_one_call() -> None:
    held, transport = cycle()
    assert isinstance(held.transport, HeldHead)
    held.chunked_encoding = False  # uvicorn saw a Content-Length
    held.transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
    assert transport.calls == []
    held.transport.write(b"{}")
    assert transport.calls == [("writelines", (b"HTTP/1.1 200 OK\r\n\r\n", b"{}"))]
    assert held.transport is transport  # the real transport from then on


def test_a_chunked_head_and_a_head_answer_are_written_at_once() -> None:
    for method, chunked in (("POST", True), ("HEAD", False)):
        held, transport = cycle(method)
        held.chunked_encoding = chunked
        held.transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
        assert transport.calls == [("write", (b"HTTP/1.1 200 OK\r\n\r\n",))]
        assert held.transport is transport


def test_a_held_head_is_written_before_the_connection_closes() -> None:
    held, transport = cycle()
    held.chunked_encoding = False
    held.transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
    held.transport.close()
    assert transport.calls == [("write", (b"HTTP/1.1 200 OK\r\n\r\n",))]
    assert transport.closed


def test_answers_arrive_whole_over_a_kept_alive_connection() -> None:
    async def scenario() -> None:
        async with RouterServer(config()) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            for method in (b"GET", b"HEAD", b"GET"):
                writer.write(method + b" /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                head = await reader.readuntil(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 200 OK\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                if method == b"GET":
                    body = await reader.readexactly(length)
                    assert body.startswith(b'{"status": "ok"')
            writer.close()

    run(scenario())
