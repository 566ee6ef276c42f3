"""Client connection limits and request framing, on raw sockets against a served router."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import time
import weakref
from typing import Any

import pytest

from llmservice.router.config import (
    DEFAULT_HEADER_TIMEOUT,
    DEFAULT_KEEP_ALIVE_TIMEOUT,
    DEFAULT_MAX_CLIENT_CONNECTIONS,
    DEFAULT_MAX_HEADER_BYTES,
    DEFAULT_MAX_HEADER_COUNT,
    ClientLimits,
)

from .backends import FakeBackend, Mode
from .conftest import CHAT, RouterServer, config, run, until

Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]
HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: router\r\n\r\n"
CHAT_HEAD = b"POST /v1/chat/completions HTTP/1.1\r\nHost: r\r\nContent-Type: application/json\r\n"


async def connect(server: RouterServer) -> Conn:
    return await asyncio.open_connection("127.0.0.1", server.port)


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, list[str]], bytes]:
    """One Content-Length response: status, headers (lower-case, every value), body."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers.setdefault(name.strip().lower(), []).append(value.strip())
    body = await reader.readexactly(int(headers.get("content-length", ["0"])[0]))
    return status, headers, body


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> float:
    """Seconds until the server closes the connection (reading whatever it sends)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with asyncio.timeout(seconds):
        with contextlib.suppress(ConnectionError):
            while await reader.read(65536):
                pass
    return loop.time() - started


def limits(**changes: Any) -> ClientLimits:
    return ClientLimits(**changes)


def test_the_defaults_are_documented_values() -> None:
    defaults = ClientLimits()
    assert defaults.max_header_count == DEFAULT_MAX_HEADER_COUNT == 100
    assert defaults.max_header_bytes == DEFAULT_MAX_HEADER_BYTES == 65_536
    assert defaults.header_timeout == DEFAULT_HEADER_TIMEOUT == 10.0
    # Longer than the 60 s idle timeout of AWS ALB and NGINX in front of the router.
    assert defaults.keep_alive_timeout == DEFAULT_KEEP_ALIVE_TIMEOUT == 75.0
    assert defaults.max_connections == DEFAULT_MAX_CLIENT_CONNECTIONS


@pytest.mark.parametrize(
    "changes",
    [
        {"max_header_count": 0},
        {"max_header_bytes": 100},
        {"header_timeout": 0},
        {"keep_alive_timeout": -1},
        {"max_connections": 0},
    ],
)
def test_nonsense_limits_are_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must be"):
        ClientLimits(**changes)


def test_headers_sent_a_byte_at_a_time_are_cut_off_at_the_header_timeout() -> None:
    async def scenario() -> None:
        cfg = config(client_limits=limits(header_timeout=0.5))
        async with RouterServer(cfg) as server:
            reader, writer = await connect(server)
            request = HEALTHZ[:-2] + b"X-Slow: " + b"a" * 200 + b"\r\n\r\n"

            async def trickle() -> None:
                for byte in request:
                    writer.write(bytes([byte]))
                    await asyncio.sleep(0.05)

            sender = asyncio.create_task(trickle())
            try:
                took = await closed_within(reader, 5.0)
            finally:
                sender.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                    await sender
                writer.close()
            assert 0.4 < took < 1.5

    run(scenario())


def test_a_connection_that_sends_nothing_is_closed_at_the_header_timeout() -> None:
    async def scenario() -> None:
        async with RouterServer(config(client_limits=limits(header_timeout=0.3))) as server:
            reader, writer = await connect(server)
            took = await closed_within(reader, 5.0)
            writer.close()
            assert took < 1.5

    run(scenario())


def test_a_head_that_arrived_in_time_is_served_after_the_loop_was_busy() -> None:
    async def scenario() -> None:
        async with RouterServer(config(client_limits=limits(header_timeout=0.3))) as server:
            reader, writer = await connect(server)
            state = server._server.server_state
            await until(lambda: len(state.connections) == 1)  # accepted: the timer runs
            writer.write(HEALTHZ)
            # The router shares this loop: block it past the deadline, the head unread.
            time.sleep(0.6)  # noqa: ASYNC251 - stalling the loop is the point
            assert (await read_response(reader))[0] == 200
            writer.close()

    run(scenario())


def test_the_header_timeout_starts_again_for_each_request_on_a_connection() -> None:
    async def scenario() -> None:
        cfg = config(client_limits=limits(header_timeout=0.4, keep_alive_timeout=5))
        async with RouterServer(cfg) as server:
            reader, writer = await connect(server)
            for _ in range(3):  # 3 x 0.25 s: longer than one header timeout in all
                await asyncio.sleep(0.25)
                writer.write(HEALTHZ)
                status, _, _ = await read_response(reader)
                assert status == 200
            writer.close()

    run(scenario())


def assert_431(status: int, headers: dict[str, list[str]], body: bytes) -> None:
    assert status == 431
    assert headers["content-type"] == ["application/json"]
    assert headers["connection"] == ["close"]
    error = json.loads(body)["error"]
    assert error["code"] == "request_header_fields_too_large"
    assert error["type"] == "invalid_request_error"


def test_too_many_headers_get_431_with_json_and_the_connection_closes() -> None:
    async def scenario() -> None:
        async with RouterServer(config(client_limits=limits(max_header_count=20))) as server:
            ok = b"".join(b"X-H%d: v\r\n" % i for i in range(19))  # 19 + Host = 20
            reader, writer = await connect(server)
            writer.write(HEALTHZ[:-2] + ok + b"\r\n")
            assert (await read_response(reader))[0] == 200
            writer.write(HEALTHZ[:-2] + ok + b"X-One-Too-Many: v\r\n\r\n")
            assert_431(*await read_response(reader))
            await closed_within(reader, 2.0)
            writer.close()

    run(scenario())


def test_ten_thousand_headers_are_refused_before_they_are_all_read() -> None:
    async def scenario() -> None:
        async with RouterServer(config()) as server:
            reader, writer = await connect(server)
            many = b"".join(b"X-H%d: v\r\n" % i for i in range(10_000))
            writer.write(HEALTHZ[:-2] + many + b"\r\n")
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            assert_431(*await read_response(reader))
            writer.close()

    run(scenario())


def test_an_oversized_header_value_gets_431_while_it_is_still_arriving() -> None:
    async def scenario() -> None:
        cfg = config(client_limits=limits(max_header_bytes=16_384))
        async with RouterServer(cfg) as server:
            reader, writer = await connect(server)
            writer.write(HEALTHZ[:-2] + b"X-Big: " + b"a" * 15_000 + b"\r\n\r\n")
            assert (await read_response(reader))[0] == 200  # under the limit: served
            # 16 MB announced, 64 KiB sent: the answer comes without the rest.
            writer.write(HEALTHZ[:-2] + b"X-Huge: " + b"a" * 65_536)
            assert_431(*await read_response(reader))
            await closed_within(reader, 2.0)
            writer.close()

    run(scenario())


def test_a_head_over_the_limit_within_one_read_is_measured_exactly() -> None:
    async def scenario() -> None:
        cfg = config(client_limits=limits(max_header_bytes=4096))
        async with RouterServer(cfg) as server:
            # A small head followed by a body in the same write: the body does not count.
            reader, writer = await connect(server)
            body = b"x" * 10_000
            writer.write(
                b"POST /nowhere HTTP/1.1\r\nHost: r\r\nContent-Length: 10000\r\n\r\n" + body
            )
            assert (await read_response(reader))[0] == 404
            writer.write(HEALTHZ[:-2] + b"X-Big: " + b"a" * 5000 + b"\r\n\r\n")
            assert_431(*await read_response(reader))
            writer.close()

    run(scenario())


def test_the_idle_keep_alive_timeout_closes_a_connection_only_after_it_has_passed() -> None:
    async def scenario() -> None:
        cfg = config(client_limits=limits(keep_alive_timeout=0.6))
        async with RouterServer(cfg) as server:
            reader, writer = await connect(server)
            writer.write(HEALTHZ)
            await read_response(reader)
            await asyncio.sleep(0.3)  # within the timeout: the connection is reused
            writer.write(HEALTHZ)
            assert (await read_response(reader))[0] == 200
            took = await closed_within(reader, 5.0)
            writer.close()
            assert 0.5 < took < 1.5

    run(scenario())


def test_connections_over_the_cap_are_closed_at_once_and_the_others_served(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        async with RouterServer(config(client_limits=limits(max_connections=3))) as server:
            held = [await connect(server) for _ in range(3)]
            for reader, writer in held:  # all three are established and served
                writer.write(HEALTHZ)
                assert (await read_response(reader))[0] == 200
            reader, writer = await connect(server)
            assert await closed_within(reader, 2.0) < 1.0
            writer.close()
            for reader, writer in held:  # still served after the refusal
                writer.write(HEALTHZ)
                assert (await read_response(reader))[0] == 200
            held[0][1].close()
            await closed_within(held[0][0], 2.0)

            async def fourth_served() -> bool:
                reader, writer = await connect(server)
                try:
                    writer.write(HEALTHZ)
                    return (await read_response(reader))[0] == 200
                except (asyncio.IncompleteReadError, ConnectionError):
                    return False
                finally:
                    writer.close()

            await until(fourth_served, within=5.0)
            for _, writer in held[1:]:
                writer.close()

    with caplog.at_level("WARNING", logger="uvicorn.error"):
        run(scenario())
    refused = [r.getMessage() for r in caplog.records if "over the cap" in r.getMessage()]
    assert refused == ["Refused 1 client connection(s) over the cap of 3 open connections"]


SMUGGLING = {
    "content-length and transfer-encoding": (
        b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    ),
    "transfer-encoding and content-length": (
        b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"
    ),
    "conflicting content-lengths": b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    "duplicate content-lengths": b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
    "content-length list": b"Content-Length: 5, 5\r\n\r\nhello",
    "content-length with a letter": b"Content-Length: 5a\r\n\r\nhello",
    "content-length with a sign": b"Content-Length: +5\r\n\r\nhello",
    "negative content-length": b"Content-Length: -5\r\n\r\nhello",
    "space before the colon": b"Content-Length : 5\r\n\r\nhello",
    "obs-fold": b"X-Folded: a\r\n b\r\nContent-Length: 0\r\n\r\n",
    "obs-fold continuing content-length": b"Content-Length: 0\r\n 5\r\n\r\nhello",
    "chunk size not hex": b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    "negative chunk size": b"Transfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n",
    "chunk size overflow": (
        b"Transfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nhello\r\n0\r\n\r\n"
    ),
    "bare LF in a chunk extension": (
        b"Transfer-Encoding: chunked\r\n\r\n5;a\nb\r\nhello\r\n0\r\n\r\n"
    ),
    "transfer-encoding not ending in chunked": (
        b"Transfer-Encoding: chunked, identity\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    ),
    "unknown transfer-encoding": b"Transfer-Encoding: xchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "two transfer-encodings": (
        b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    ),
    "NUL in a header value": b"X-A: a\x00b\r\nContent-Length: 0\r\n\r\n",
}


@pytest.mark.parametrize("tail", SMUGGLING.values(), ids=list(SMUGGLING))
def test_request_smuggling_shapes_get_400_and_never_reach_the_engine(tail: bytes) -> None:
    async def scenario() -> None:
        async with FakeBackend() as backend, RouterServer(config(backend.url)) as server:
            body = json.dumps(CHAT).encode()
            reader, writer = await connect(server)
            head = CHAT_HEAD
            # The smuggled request would follow the ambiguous one on the same connection.
            smuggled = CHAT_HEAD + b"Content-Length: %d\r\n\r\n" % len(body) + body
            writer.write(head + tail + smuggled)
            status, headers, answer = await read_response(reader)
            assert status == 400
            assert headers["connection"] == ["close"]
            assert json.loads(answer)["error"]["type"] == "invalid_request_error"
            await closed_within(reader, 2.0)
            writer.close()
            assert backend.requests == []

    run(scenario())


def test_a_chunked_request_is_forwarded_with_a_content_length_only() -> None:
    async def scenario() -> None:
        async with FakeBackend() as backend, RouterServer(config(backend.url)) as server:
            body = json.dumps(CHAT).encode()
            reader, writer = await connect(server)
            writer.write(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: r\r\n"
                b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                + b"%x\r\n" % 10 + body[:10] + b"\r\n"
                + b"%x\r\n" % (len(body) - 10) + body[10:] + b"\r\n0\r\n\r\n"
            )  # fmt: skip
            status, _, _ = await read_response(reader)
            writer.close()
            assert status == 200
            (received,) = backend.requests
            assert "transfer-encoding" not in received.headers
            assert received.headers["content-length"] == str(len(received.body))
            assert received.json()["messages"] == CHAT["messages"]

    run(scenario())


@pytest.mark.parametrize("chunked", [False, True])
def test_a_body_in_many_pieces_reaches_the_engine_whole(chunked: bool) -> None:
    # Pieces that come in reads of their own, each taken by the app before the next (a
    # Content-Length body written slowly), or that pile up within one read before the app
    # takes any (a chunked body of many small chunks written at once, and more of it than
    # uvicorn's flow control lets in before it pauses reading): either way the engine gets
    # every byte, in order.
    async def scenario() -> None:
        async with FakeBackend() as backend, RouterServer(config(backend.url)) as server:
            filler = "".join(chr(0x41 + n % 26) for n in range(300_000))
            body = json.dumps({**CHAT, "user": filler}).encode()
            pieces = [body[start : start + 1500] for start in range(0, len(body), 1500)]
            reader, writer = await connect(server)
            if chunked:
                writer.write(CHAT_HEAD + b"Transfer-Encoding: chunked\r\n\r\n")
                writer.write(b"".join(b"%x\r\n%b\r\n" % (len(p), p) for p in pieces))
                writer.write(b"0\r\n\r\n")
            else:
                writer.write(CHAT_HEAD + b"Content-Length: %d\r\n\r\n" % len(body))
                for piece in pieces:
                    writer.write(piece)
                    await writer.drain()
                    await asyncio.sleep(0.001)
            status, _, _ = await read_response(reader)
            writer.close()
            assert status == 200
            (received,) = backend.requests
            assert received.body == body

    run(scenario())


def test_a_connection_in_use_stays_open_past_the_keep_alive_timeout() -> None:
    # One timer per connection moves on as requests come: only idleness closes it.
    async def scenario() -> None:
        cfg = config(client_limits=limits(keep_alive_timeout=0.4))
        async with RouterServer(cfg) as server:
            reader, writer = await connect(server)
            for _ in range(8):  # 1.2 s of requests, 0.15 s apart: three timeouts' worth
                writer.write(HEALTHZ)
                assert (await read_response(reader))[0] == 200
                await asyncio.sleep(0.15)
            took = await closed_within(reader, 5.0)
            writer.close()
            assert 0.1 < took < 1.2  # 0.4 s after the last answer (0.15 s of it slept)

    run(scenario())


def test_an_answer_longer_than_the_keep_alive_timeout_is_not_cut() -> None:
    async def scenario() -> None:
        async with FakeBackend(Mode.STREAM, chunks=6, delay=0.15) as backend:
            cfg = config(backend.url, client_limits=limits(keep_alive_timeout=0.3))
            async with RouterServer(cfg) as server:
                reader, writer = await connect(server)
                writer.write(HEALTHZ)  # an answer first: the keep-alive timer is armed
                assert (await read_response(reader))[0] == 200
                body = json.dumps({**CHAT, "stream": True}).encode()
                writer.write(CHAT_HEAD + b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
                answer = b""
                async with asyncio.timeout(10):
                    while not answer.endswith(b"0\r\n\r\n"):  # 0.9 s of chunks
                        part = await reader.read(65536)
                        assert part, f"closed in the middle of the answer: {answer!r}"
                        answer += part
                assert answer.startswith(b"HTTP/1.1 200")
                assert b"data: [DONE]" in answer
                took = await closed_within(reader, 5.0)
                writer.close()
                assert took < 1.0  # idle again, it closes after its timeout

    run(scenario())


def test_a_closed_connection_is_not_kept_by_its_keep_alive_timer() -> None:
    async def scenario() -> None:
        async with RouterServer(config()) as server:  # the default timeout: 75 s
            reader, writer = await connect(server)
            writer.write(HEALTHZ)
            assert (await read_response(reader))[0] == 200
            connections = server._server.server_state.connections
            (protocol,) = connections
            gone = weakref.ref(protocol)
            del protocol
            writer.close()
            await until(lambda: not connections)
            # Collected once the loop has let go of the closed transport (a few iterations),
            # not 75 s later when the keep-alive timer would have fired.
            await until(lambda: gc.collect() >= 0 and gone() is None, within=5.0)

    run(scenario())
