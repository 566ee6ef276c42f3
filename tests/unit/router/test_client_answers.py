"""Request bodies taken and answers written past ASGI (`ClientConnection`), on real sockets.

The router's own server lets the app take a body that came with its head and write its
answers itself; what goes over the wire must be what uvicorn's ``receive`` and ``send``
would have made of the same requests, which the first test compares byte for byte with the
same app under uvicorn's own protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Callable
from typing import Any

import pytest
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from llmservice.router import client_connection
from llmservice.router.client_connection import ClientConnection

from .backends import FakeBackend, Mode
from .conftest import (
    CHAT,
    RouterServer,
    config,
    reset_at_exit,
    run,
    scripted_engine,
    until,
    until_stalled,
)

BODY = json.dumps(CHAT).encode()
_DATE = re.compile(rb"\r\ndate: [^\r]*\r\n")
_PORT = re.compile(rb"127\.0\.0\.1:\d+")  # the engine's, named in /healthz


def post(
    *,
    request_id: bytes,
    path: bytes = b"/v1/chat/completions",
    body: bytes = BODY,
    version: bytes = b"1.1",
    extra: bytes = b"",
) -> bytes:
    return (
        b"POST " + path + b" HTTP/" + version + b"\r\nhost: x\r\n"
        b"content-type: application/json\r\nx-request-id: " + request_id + b"\r\n"
        + extra
        + b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )  # fmt: skip


def get(target: bytes, *, method: bytes = b"GET", extra: bytes = b"") -> bytes:
    return (
        method
        + b" "
        + target
        + b" HTTP/1.1\r\nhost: x\r\nx-request-id: r-get\r\n"
        + extra
        + b"\r\n"
    )


# Each a conversation on one connection, sent in one write (pipelined), whose last request
# makes the router close the connection: everything the router wrote is then read.
CONVERSATIONS = {
    "pipelined": [
        post(request_id=b"r-1"),
        post(
            request_id=b"r-2",
            path=b"/v1/completions",
            body=b'{"model": "gpt-3.5-turbo", "prompt": "hi"}',
        ),  # an alias, rewritten
        get(b"/healthz"),
        get(b"/healthz", method=b"HEAD"),
        get(b"/v1/models"),
        get(b"/v1/models/nope"),  # 404
        get(b"/nowhere"),  # 404
        get(b"/v1/chat/completions"),  # 405
        post(request_id=b"r-3", body=b'{"model": "llama", "messages": ['),  # 400
        post(request_id=b"r-4", body=b""),  # 400, no body
        post(request_id=b"r-5", extra=b"connection: close\r\n"),
    ],
    "http/1.0": [post(request_id=b"r-6", version=b"1.0")],
    "stream": [
        post(request_id=b"r-7", body=json.dumps({**CHAT, "stream": True}).encode()),
        post(request_id=b"r-8", extra=b"connection: close\r\n"),
    ],
}


async def _conversation(router: RouterServer, requests: list[bytes]) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
    writer.write(b"".join(requests))
    received = await reader.read(-1)  # until the router closes the connection
    writer.close()
    return _PORT.sub(b"engine", _DATE.sub(b"\r\ndate: -\r\n", received))


@pytest.mark.parametrize("name", sorted(CONVERSATIONS))
def test_answers_past_asgi_are_byte_for_byte_those_of_uvicorns_send(name: str) -> None:
    async def scenario() -> tuple[bytes, bytes]:
        received = []
        for plain in (False, True):
            async with (
                FakeBackend(Mode.STREAM if name == "stream" else Mode.JSON, chunks=3) as backend,
                RouterServer(config(backend.url), plain_server=plain) as router,
            ):
                received.append(await _conversation(router, CONVERSATIONS[name]))
        return received[0], received[1]

    past_asgi, through_asgi = run(scenario())
    assert past_asgi.count(b"HTTP/1.") == len(CONVERSATIONS[name])
    assert past_asgi == through_asgi


class _Recorder:
    """A client transport that records each write call (each a system call)."""

    def __init__(self, transport: Any, calls: list[tuple[bytes, ...]]) -> None:
        self._transport = transport
        self._calls = calls

    def write(self, data: bytes) -> None:
        self._calls.append((data,))
        self._transport.write(data)

    def writelines(self, parts: Any) -> None:
        parts = tuple(parts)
        self._calls.append(parts)
        self._transport.writelines(parts)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def test_an_answer_with_a_length_is_one_write_and_no_asgi_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[bytes, ...]] = []
    messages: list[str] = []
    offer, send, receive = (
        client_connection.offer,
        RequestResponseCycle.send,
        RequestResponseCycle.receive,
    )

    def recorded_offer(cycle: RequestResponseCycle) -> None:
        cycle.transport = _Recorder(cycle.transport, calls)  # type: ignore[assignment]
        offer(cycle)

    async def counted_send(self: RequestResponseCycle, message: Any) -> None:
        messages.append(message["type"])
        await send(self, message)

    async def counted_receive(self: RequestResponseCycle) -> Any:
        message = await receive(self)
        messages.append(message["type"])
        return message

    monkeypatch.setattr(client_connection, "offer", recorded_offer)
    monkeypatch.setattr(RequestResponseCycle, "send", counted_send)
    monkeypatch.setattr(RequestResponseCycle, "receive", counted_receive)

    async def scenario() -> None:
        async with (
            FakeBackend(Mode.JSON) as backend,
            RouterServer(config(backend.url)) as router,
        ):
            reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
            for request in (post(request_id=b"r-1"), get(b"/healthz"), post(request_id=b"r-2")):
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(re.findall(rb"content-length: (\d+)", head)[0])
                await reader.readexactly(length)
            writer.close()
            assert [request.body for request in backend.requests] == [BODY, BODY]

    run(scenario())
    assert messages == []  # neither the bodies nor the answers went through ASGI
    assert len(calls) == 3
    for call in calls:  # the head and the body together
        assert len(call) == 2
        assert call[0].startswith(b"HTTP/1.1 200 OK\r\n")
        assert call[0].endswith(b"\r\n\r\n")


def test_a_body_that_comes_after_its_head_is_read_through_receive() -> None:
    """Sent in two writes, or after ``100 Continue``: the body is read as it comes."""

    async def scenario() -> None:
        async with (
            FakeBackend(Mode.JSON) as backend,
            RouterServer(config(backend.url)) as router,
        ):
            reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
            request = post(request_id=b"r-1")
            head, _, body = request.partition(b"\r\n\r\n")
            writer.write(head + b"\r\n\r\n" + body[:10])
            await asyncio.sleep(0.1)
            writer.write(body[10:])
            answer = await reader.readuntil(b"\r\n\r\n")
            assert answer.startswith(b"HTTP/1.1 200 OK")
            length = int(re.findall(rb"content-length: (\d+)", answer)[0])
            await reader.readexactly(length)
            writer.write(head + b"\r\nexpect: 100-continue\r\n\r\n")
            assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
            writer.write(body)
            assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200 OK")
            writer.close()
            assert [request.body for request in backend.requests] == [BODY, BODY]

    run(scenario())


def test_a_client_that_reads_no_large_answer_holds_the_engine_back() -> None:
    """A non-streamed answer far larger than the buffers between: while the client reads
    nothing the engine's writes stop; reading on, the client gets every byte."""
    size, part = 64 << 20, 1 << 16

    async def scenario() -> None:
        written = 0

        async def engine(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal written
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n")
            writer.write(b"content-length: %d\r\n\r\n" % size)
            with contextlib.suppress(ConnectionError):
                while written < size:
                    writer.write(b"x" * part)
                    await writer.drain()  # blocks while the router does not read
                    written += part
            writer.close()

        server, url = await scripted_engine(engine)
        async with (
            server,
            RouterServer(config(url)) as router,
            reset_at_exit(router.port) as (reader, writer),
        ):
            writer.write(post(request_id=b"r-1"))
            await until_stalled(lambda: written)
            assert written < size // 4
            head = await reader.readuntil(b"\r\n\r\n")
            assert b"content-length: %d\r\n" % size in head
            assert len(await reader.readexactly(size)) == size

    run(scenario())


def test_an_answer_cut_off_before_its_body_still_gets_its_head_out() -> None:
    async def scenario() -> None:
        async def engine(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 99\r\n\r\n"
            )
            await writer.drain()
            writer.close()

        server, url = await scripted_engine(engine)
        async with server, RouterServer(config(url)) as router:
            reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
            writer.write(post(request_id=b"r-1"))
            received = await reader.read(-1)  # the router closes the connection
            writer.close()
            assert received.startswith(b"HTTP/1.1 200 OK\r\n")
            assert received.endswith(b"content-length: 99\r\nx-request-id: r-1\r\n\r\n")
            await until(lambda: len(router.log_lines()) == 1)
            assert router.log_lines()[0]["cause"] == "upstream_protocol"

    run(scenario())


# -- the connection's own checks, on a cycle of its own -------------------------------------


class _Transport:
    def __init__(self) -> None:
        self.written = b""
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def writelines(self, parts: Any) -> None:
        self.written += b"".join(parts)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


def _connection(
    method: str = "POST", keep_alive: bool = True
) -> tuple[ClientConnection, RequestResponseCycle, _Transport, list[str]]:
    transport = _Transport()
    done: list[str] = []
    cycle = RequestResponseCycle(
        {"type": "http", "method": method},  # type: ignore[arg-type]
        transport=transport,  # type: ignore[arg-type]
        flow=FlowControl(transport),  # type: ignore[arg-type]
        logger=logging.getLogger("test"),
        access_logger=logging.getLogger("test"),
        access_log=False,
        default_headers=[(b"date", b"today")],
        message_event=asyncio.Event(),
        expect_100_continue=False,
        keep_alive=keep_alive,
        on_response=lambda: done.append("complete"),
    )
    return ClientConnection(cycle), cycle, transport, done


LENGTH = [(b"content-type", b"text/plain"), (b"content-length", b"2")]


@pytest.mark.parametrize(
    ("headers", "chunked", "method", "why"),
    [
        (LENGTH, False, "HEAD", "a HEAD answer has no body: uvicorn drops it"),
        ([(b"Content-Length", b"2")], False, "POST", "a name that is not lowercase"),
        ([(b"x bad", b"1"), *LENGTH], False, "POST", "a name uvicorn refuses"),
        ([(b"x-a", b"1\r\nx-b: 2"), *LENGTH], False, "POST", "a value uvicorn refuses"),
        ([(b"connection", b"close"), *LENGTH], False, "POST", "framing of the app's own"),
        ([(b"transfer-encoding", b"chunked")], True, "POST", "framing of the app's own"),
        (LENGTH, True, "POST", "a length on a chunked answer"),
        ([(b"content-type", b"text/plain")], False, "POST", "no length, not chunked"),
        ([(b"content-length", b"-2")], False, "POST", "a length that is not a number"),
    ],
)
def test_what_send_would_refuse_or_frame_its_own_way_is_left_to_it(
    headers: list[tuple[bytes, bytes]], chunked: bool, method: str, why: str
) -> None:
    connection, cycle, transport, _ = _connection(method)
    assert not connection.start(200, headers, chunked=chunked), why
    assert not cycle.response_started
    assert transport.written == b""


@pytest.mark.parametrize(
    "state",
    [
        lambda cycle: setattr(cycle, "response_started", True),
        lambda cycle: setattr(cycle, "disconnected", True),
        lambda cycle: cycle.flow.pause_writing(),
    ],
    ids=["started", "gone", "takes-no-writes"],
)
def test_an_answer_is_left_to_send_when_the_client_cannot_take_it_now(
    state: Callable[[RequestResponseCycle], None],
) -> None:
    connection, cycle, transport, _ = _connection()
    state(cycle)
    assert not connection.start(200, LENGTH, chunked=False)
    assert transport.written == b""


def test_the_head_waits_for_the_body_and_the_last_part_completes_the_answer() -> None:
    connection, cycle, transport, done = _connection()
    assert connection.start(200, LENGTH, chunked=False)
    assert transport.written == b""
    assert cycle.response_started
    connection.write(b"o", True)
    head = (
        b"HTTP/1.1 200 OK\r\ndate: today\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\n"
    )
    assert transport.written == head + b"o"
    assert done == []
    connection.write(b"k", False)
    assert transport.written == head + b"ok"
    assert cycle.response_complete
    assert done == ["complete"]
    assert not transport.closed


def test_a_connection_not_kept_alive_says_so_and_is_closed() -> None:
    connection, _, transport, done = _connection(keep_alive=False)
    assert connection.start(200, [], chunked=True)
    connection.write(b"", True)  # the head alone
    assert transport.written.endswith(b"connection: close\r\ntransfer-encoding: chunked\r\n\r\n")
    connection.write(b"ok", False)
    assert transport.written.endswith(b"\r\n\r\n2\r\nok\r\n0\r\n\r\n")
    assert transport.closed
    assert done == ["complete"]


def test_a_body_longer_or_shorter_than_its_length_is_an_error_as_in_send() -> None:
    connection, *_ = _connection()
    assert connection.start(200, LENGTH, chunked=False)
    with pytest.raises(RuntimeError, match="longer"):
        connection.write(b"abc", False)
    connection, *_ = _connection()
    assert connection.start(200, LENGTH, chunked=False)
    with pytest.raises(RuntimeError, match="shorter"):
        connection.write(b"a", False)


def test_nothing_is_written_to_a_client_gone_and_a_held_head_is_flushed_alone() -> None:
    connection, cycle, transport, done = _connection()
    assert connection.start(200, LENGTH, chunked=False)
    connection.flush()
    assert transport.written.endswith(b"content-length: 2\r\n\r\n")
    connection.flush()  # once
    assert transport.written.count(b"HTTP/1.1") == 1
    cycle.disconnected = True
    connection.write(b"ok", False)
    assert transport.written.endswith(b"\r\n\r\n")
    assert done == []


def test_a_body_is_taken_once_whole_and_never_before_it_has_all_arrived() -> None:
    connection, cycle, *_ = _connection()
    cycle.body = bytearray(b"par")
    assert connection.take_body() is None  # more to come
    cycle.body += b"ts"
    cycle.more_body = False
    cycle.message_event.set()
    taken = connection.take_body()
    assert taken == b"parts"
    assert type(taken) is bytes
    assert not cycle.message_event.is_set()  # a later receive() waits for the end
    assert connection.take_body() == b""
