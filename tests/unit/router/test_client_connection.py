"""Streamed parts written straight to the client (`client_connection`), on real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

import pytest
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from llmservice.router import client_connection
from llmservice.router.client_connection import ClientConnection, PartWriter

from .backends import FakeBackend, Mode
from .conftest import (
    CHAT,
    Answers,
    RouterServer,
    config,
    reset_at_exit,
    run,
    scripted_engine,
    until,
    until_stalled,
)

STREAM = {**CHAT, "stream": True}
EVENTS = 2_000
PAD = "x" * 16_000  # 2,000 events of 16 KB: far more than the buffers between
REQUEST = json.dumps(STREAM).encode()


class _CountedTransport:
    """A client transport that counts the parts written to it."""

    def __init__(self, transport: asyncio.WriteTransport, counts: dict[bool, int]) -> None:
        self.transport = transport
        self.counts = counts

    def write(self, data: bytes) -> None:
        self.counts[True] += 1
        self.transport.write(data)


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> dict[bool, int]:
    """A chunked answer's parts by the way they went: True for those the engine connection
    wrote to the client itself, False for those the request's task wrote (through uvicorn's
    ``send`` or the connection's `ClientConnection.write` or ``write_frames``)."""
    counts = {True: 0, False: 0}
    part_writer = ClientConnection.part_writer
    send = RequestResponseCycle.send
    write = ClientConnection.write
    write_frames = ClientConnection.write_frames

    def counted_writer(self: ClientConnection, clock: Callable[[], float]) -> PartWriter:
        writer = part_writer(self, clock)
        writer.transport = _CountedTransport(writer.transport, counts)  # type: ignore[assignment]
        return writer

    async def counted_send(self: RequestResponseCycle, message: Any) -> None:
        if (
            self.chunked_encoding
            and message["type"] == "http.response.body"
            and message.get("more_body")
        ):
            counts[False] += 1
        await send(self, message)

    def counted_write(self: ClientConnection, body: bytes, more: bool) -> None:
        if self.streaming and body and more:
            counts[False] += 1
        write(self, body, more)

    def counted_write_frames(self: ClientConnection, frames: bytes, more: bool) -> None:
        if frames and more:
            counts[False] += 1
        write_frames(self, frames, more)

    monkeypatch.setattr(ClientConnection, "part_writer", counted_writer)
    monkeypatch.setattr(ClientConnection, "write", counted_write)
    monkeypatch.setattr(ClientConnection, "write_frames", counted_write_frames)
    monkeypatch.setattr(RequestResponseCycle, "send", counted_send)
    return counts


def _post(path: bytes = b"/v1/chat/completions") -> bytes:
    return (
        b"POST " + path + b" HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"content-length: " + str(len(REQUEST)).encode() + b"\r\n\r\n" + REQUEST
    )


def test_a_slow_reader_gets_every_event_in_order(writes: dict[bool, int]) -> None:
    """Parts go straight out while the client reads, through `send` while it does not."""

    async def scenario() -> None:
        written = 0

        async def engine(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal written
            await reader.readuntil(b"\r\n\r\n")
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                b"transfer-encoding: chunked\r\n\r\n"
            )
            with contextlib.suppress(ConnectionError):
                for n in range(EVENTS):
                    data = b"data: " + json.dumps({"n": n, "pad": PAD}).encode() + b"\n\n"
                    writer.write(b"%x\r\n%b\r\n" % (len(data), data))
                    await writer.drain()  # blocks while the router does not read
                    written += 1
                writer.write(b"5\r\n[END]\r\n0\r\n\r\n")
                await writer.drain()
                await reader.read()  # until the router lets the connection go
            writer.close()

        server, url = await scripted_engine(engine)
        async with (
            server,
            RouterServer(config(url)) as router,
            reset_at_exit(router.port) as (reader, writer),
        ):
            writer.write(_post())
            # The client reads nothing: the engine's writes stop once the buffers between
            # are full.
            await until_stalled(lambda: written)
            assert written < EVENTS // 2
            buffered = [c.buffered for c in router.app.proxy.pool._open]  # type: ignore[union-attr]
            assert max(buffered) <= 512 << 10
            written_straight = writes[True]
            # Reading on, the client gets every event once, in order, in valid framing.
            answers = Answers()
            await answers.read(reader, 1)
            body = bytes(answers.bodies[0])
            events = body.split(b"\n\n")
            assert events[-1] == b"[END]"
            numbers = [json.loads(event[len(b"data: ") :])["n"] for event in events[:-1]]
            assert numbers == list(range(EVENTS))
        # Both ways were taken: straight out, and through `send` while writing was paused;
        # and straight out again once the client took writes again.
        assert written_straight > 0
        assert writes[False] > 0
        assert writes[True] > written_straight

    run(scenario())


def test_the_connection_is_kept_alive_after_a_written_stream(writes: dict[bool, int]) -> None:
    async def scenario() -> None:
        async with (
            FakeBackend(Mode.STREAM, chunks=5, delay=0.05) as backend,
            RouterServer(config(backend.url)) as router,
        ):
            reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
            answers = Answers()
            for count in (1, 2):
                writer.write(_post())
                await answers.read(reader, count)
            writer.close()
            for body in answers.bodies:
                events = [e for e in bytes(body).split(b"\n\n") if e]
                assert len(events) == 7  # 5 tokens, usage, [DONE]
                assert events[-1] == b"data: [DONE]"
            await until(lambda: len(router.log_lines()) == 2)
            for line in router.log_lines():
                assert (line["status"], line["prompt_tokens"], line["completion_tokens"]) == (
                    200,
                    4,
                    5,
                )
                assert line["ttfb_ms"] is not None
            assert len(backend.requests) == 2
        assert writes[True] >= 8  # each token went straight out, in both answers

    run(scenario())


def test_a_hang_up_mid_stream_stops_the_writer_for_good(monkeypatch: pytest.MonkeyPatch) -> None:
    """Once the client is gone nothing is written to its closed transport (uvloop raises
    there), even before the request's task hears of it."""
    made: list[PartWriter] = []
    part_writer = ClientConnection.part_writer

    def recorded(self: ClientConnection, clock: Callable[[], float]) -> PartWriter:
        made.append(part_writer(self, clock))
        return made[-1]

    monkeypatch.setattr(ClientConnection, "part_writer", recorded)

    async def scenario() -> None:
        async with (
            FakeBackend(Mode.STREAM, chunks=200, delay=0.01) as backend,
            RouterServer(config(backend.url)) as router,
        ):
            reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
            writer.write(_post())
            await reader.readuntil(b"data: ")  # the stream is under way
            assert made[0].writable
            writer.close()
            await until(lambda: len(router.log_lines()) == 1)
            assert router.log_lines()[0]["status"] == 499
            assert not made[0].writable

    run(scenario())


def test_a_non_streamed_answer_is_not_spliced_part_by_part(writes: dict[bool, int]) -> None:
    async def scenario() -> None:
        async with (
            FakeBackend(Mode.JSON) as backend,
            RouterServer(config(backend.url)) as router,
        ):
            reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
            writer.write(
                b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n"
                b"content-type: application/json\r\ncontent-length: "
                + str(len(json.dumps(CHAT))).encode()
                + b"\r\n\r\n"
                + json.dumps(CHAT).encode()
            )
            answers = Answers()
            await answers.read(reader, 1)
            writer.close()
            assert json.loads(bytes(answers.bodies[0]))["usage"]["total_tokens"] == 10
        assert writes == {True: 0, False: 0}

    run(scenario())


def test_a_hang_up_before_the_callback_is_set_is_reported_at_once() -> None:
    """The client may leave between the body's end and the forward: no report is lost."""
    scope = {"type": "http", "method": "POST"}
    cycle = RequestResponseCycle(
        scope,  # type: ignore[arg-type]
        transport=None,  # type: ignore[arg-type]
        flow=None,  # type: ignore[arg-type]
        logger=logging.getLogger("test"),
        access_logger=logging.getLogger("test"),
        access_log=False,
        default_headers=[],
        message_event=asyncio.Event(),
        expect_100_continue=False,
        keep_alive=True,
        on_response=lambda: None,
    )
    client_connection.offer(cycle)
    connection = client_connection.client_connection(scope)
    assert connection is not None
    calls: list[str] = []
    connection.on_disconnect(lambda: calls.append("later"))
    cycle.disconnected = True
    client_connection.disconnected(cycle)  # what the server's connection_lost does
    assert calls == ["later"]
    client_connection.disconnected(cycle)  # reported once
    assert calls == ["later"]
    connection.on_disconnect(lambda: calls.append("already gone"))
    assert calls == ["later", "already gone"]
