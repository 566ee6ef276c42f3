"""The pooled upstream client on real sockets: reuse, errors, framing."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from llmservice.router.upstream import (
    ConnectError,
    DisconnectedError,
    Pool,
    ProtocolError,
    Response,
)

from .backends import FakeBackend, Mode, refusing_url
from .conftest import run, until

HEAD = b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json"
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_all(pool: Pool, port: int) -> tuple[int, bytes]:
    response = await pool.request("127.0.0.1", port, HEAD, b"{}")
    body = b""
    while chunk := await response.read_chunk():
        body += chunk
    return response.status, body


async def drain(response: Response) -> None:
    while await response.read_chunk():
        pass


async def raw_server(handler: Handler) -> tuple[asyncio.Server, int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def test_keep_alive_connections_are_reused() -> None:
    async def scenario() -> None:
        async with FakeBackend(Mode.JSON) as backend, Pool(limit=4, connect_timeout=5) as pool:
            for _ in range(5):
                status, body = await read_all(pool, backend.port)
                assert status == 200
                assert b'"usage"' in body
            assert len(backend.requests) == 5
            assert len(backend._writers) == 1  # one connection served all five

    run(scenario())


def test_refused_connection_is_a_connect_error() -> None:
    async def scenario() -> None:
        port = int(refusing_url().rsplit(":", 1)[1])
        async with Pool(limit=4, connect_timeout=5) as pool:
            with pytest.raises(ConnectError):
                await pool.request("127.0.0.1", port, HEAD, b"{}")

    run(scenario())


def test_close_before_response_is_retryable_and_mid_body_is_not() -> None:
    async def scenario() -> None:
        async with FakeBackend(Mode.CLOSE) as closing, Pool(limit=4, connect_timeout=5) as pool:
            with pytest.raises(DisconnectedError) as caught:
                await pool.request("127.0.0.1", closing.port, HEAD, b"{}")
            assert caught.value.before_response
        async with (
            FakeBackend(Mode.DIE_MID_STREAM, chunks=2) as dying,
            Pool(limit=4, connect_timeout=5) as pool,
        ):
            response = await pool.request("127.0.0.1", dying.port, HEAD, b"{}")
            with pytest.raises(DisconnectedError) as caught:
                await drain(response)
            assert not caught.value.before_response

    run(scenario())


def test_body_delimited_by_connection_close_and_garbage() -> None:
    async def scenario() -> None:
        async def until_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nall of it")
            await writer.drain()
            writer.close()

        async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"SMTP ready\r\n\r\n")
            await writer.drain()
            await reader.read()  # until the client hangs up
            writer.close()

        first, port = await raw_server(until_close)
        second, bad_port = await raw_server(garbage)
        async with first, second, Pool(limit=4, connect_timeout=5) as pool:
            assert await read_all(pool, port) == (200, b"all of it")
            with pytest.raises(ProtocolError):
                await pool.request("127.0.0.1", bad_port, HEAD, b"{}")

    run(scenario())


def test_idle_connection_closed_by_the_engine_frees_its_slot() -> None:
    async def scenario() -> None:
        finished = 0

        async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal finished
            try:
                await reader.readuntil(b"\r\n\r\n")
                await reader.readexactly(2)
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                await writer.drain()
                await asyncio.sleep(0.05)
            finally:
                writer.close()  # the server closes the keep-alive connection
                finished += 1

        server, port = await raw_server(once)
        async with server, Pool(limit=1, connect_timeout=5) as pool:
            assert await read_all(pool, port) == (200, b"ok")
            await until(lambda: not pool._open)
            # The single slot is free again: a new connection can be made.
            assert await asyncio.wait_for(read_all(pool, port), 5) == (200, b"ok")
            await until(lambda: finished == 2)

    run(scenario())


def test_a_full_pool_of_idle_connections_makes_room_for_another_engine() -> None:
    async def scenario() -> None:
        async with (
            FakeBackend(Mode.JSON) as a,
            FakeBackend(Mode.JSON) as b,
            Pool(limit=2, connect_timeout=5) as pool,
        ):
            # Two requests at once to a: two connections, both idle afterwards; the pool is full.
            assert await asyncio.gather(read_all(pool, a.port), read_all(pool, a.port))
            assert a.connections == 2
            assert len(pool._open) == 2
            # A request to b does not wait for a slot: an idle connection to a is closed.
            status, _ = await asyncio.wait_for(read_all(pool, b.port), 5)
            assert status == 200
            assert len(pool._open) == 2
            assert len(pool._idle[("127.0.0.1", a.port)]) == 1

    run(scenario())


def test_a_connection_coming_back_while_a_request_waits_for_room_is_closed() -> None:
    async def scenario() -> None:
        async with (
            FakeBackend(Mode.JSON) as a,
            FakeBackend(Mode.JSON) as b,
            Pool(limit=1, connect_timeout=5) as pool,
        ):
            held = await pool.request("127.0.0.1", a.port, HEAD, b"{}")  # the only slot
            waiting = asyncio.ensure_future(read_all(pool, b.port))
            await until(lambda: pool._waiting == 1)
            await drain(held)  # a's connection comes back: it makes room instead of idling
            assert (await asyncio.wait_for(waiting, 5))[0] == 200
            assert ("127.0.0.1", a.port) not in pool._idle

    run(scenario())


def test_an_answer_with_connection_close_is_not_reused() -> None:
    async def scenario() -> None:
        connections = 0

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal connections
            connections += 1
            try:
                while True:
                    await reader.readuntil(b"\r\n\r\n")
                    await reader.readexactly(2)
                    # Says close but leaves the socket open: the client must not reuse it.
                    writer.write(
                        b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok"
                    )
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                writer.close()

        server, port = await raw_server(serve)
        async with server, Pool(limit=4, connect_timeout=5) as pool:
            for _ in range(3):
                assert await read_all(pool, port) == (200, b"ok")
            assert connections == 3
            assert not pool._idle

    run(scenario())


def test_idle_connections_expire_before_the_engines_keep_alive_timeout() -> None:
    async def scenario() -> None:
        now = [0.0]
        async with (
            FakeBackend(Mode.JSON) as backend,  # answers with keep-alive: timeout=5
            Pool(limit=4, connect_timeout=5, keepalive=30.0, clock=lambda: now[0]) as pool,
        ):
            await read_all(pool, backend.port)
            now[0] += 3.9  # under the engine's 5 s less a second of margin: reused
            await read_all(pool, backend.port)
            assert backend.connections == 1
            now[0] += 4.1  # past it: a new connection, the old one closed
            await read_all(pool, backend.port)
            assert backend.connections == 2
            assert len(pool._open) == 1

    run(scenario())


def test_a_reused_connection_closed_by_the_engine_says_so() -> None:
    async def scenario() -> None:
        async with (
            FakeBackend(Mode.CLOSE_REUSED) as backend,
            Pool(limit=4, connect_timeout=5) as pool,
        ):
            await read_all(pool, backend.port)
            with pytest.raises(DisconnectedError) as stale:
                await read_all(pool, backend.port)
            assert stale.value.before_response
            assert stale.value.reused
            # A fresh connection that breaks is not a stale one.
            backend.mode = Mode.RESET
            with pytest.raises(DisconnectedError) as broken:
                await read_all(pool, backend.port)
            assert not broken.value.reused

    run(scenario())


# -- splice -------------------------------------------------------------------------------


class Engine:
    """A raw engine whose chunked answer the test writes part by part."""

    def __init__(self) -> None:
        self.writer: asyncio.StreamWriter | None = None
        self.done = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(2)  # the body, "{}"
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        self.writer = writer
        await reader.read()  # until the client lets the connection go
        writer.close()
        self.done.set()

    async def part(self, data: bytes) -> None:
        assert self.writer is not None
        self.writer.write(b"%x\r\n%b\r\n" % (len(data), data) if data else b"0\r\n\r\n")
        await self.writer.drain()


class Outlet:
    """An outlet whose transport is itself: it keeps each part written, unframed."""

    def __init__(self, writable: bool) -> None:
        self.transport = self
        self.writable = writable
        self.first_at: float | None = None
        self.previous = self.last = b""
        self.taken: list[bytes] = []

    def clock(self) -> float:
        return 1.5

    def write(self, data: bytes) -> None:
        size, rest = data.split(b"\r\n", 1)
        assert rest.endswith(b"\r\n")  # one whole chunk
        assert int(size, 16) == len(rest) - 2
        self.taken.append(rest[:-2])


def test_an_outlet_gets_each_read_while_the_reader_waits() -> None:
    async def scenario() -> None:
        engine = Engine()
        server, port = await raw_server(engine.handle)
        async with server, Pool(limit=4, connect_timeout=5) as pool:
            response = await pool.request("127.0.0.1", port, HEAD, b"{}")
            outlet = Outlet(writable=True)
            taken = outlet.taken
            response.splice(outlet)  # type: ignore[arg-type]
            reading = asyncio.ensure_future(response.read_chunk())
            await asyncio.sleep(0)  # the reader is waiting
            for n in range(3):
                await engine.part(b"part %d" % n)
                await until(lambda n=n: len(taken) == n + 1)  # type: ignore[misc]
            assert not reading.done()  # the reader slept through all three
            assert taken == [b"part 0", b"part 1", b"part 2"]
            # Noted as written: the first one's time, the last two.
            assert (outlet.first_at, outlet.previous, outlet.last) == (1.5, b"part 1", b"part 2")
            await engine.part(b"last")
            await engine.part(b"")
            # The end of the body is the reader's: the last part with it, then b"".
            assert await reading == b"last"
            assert response.ended
            assert await response.read_chunk() == b""
            assert taken == [b"part 0", b"part 1", b"part 2"]
        await engine.done.wait()

    run(scenario())


def test_what_the_outlet_does_not_take_reaches_the_reader_first_and_in_order() -> None:
    async def scenario() -> None:
        engine = Engine()
        server, port = await raw_server(engine.handle)
        async with server, Pool(limit=4, connect_timeout=5) as pool:
            response = await pool.request("127.0.0.1", port, HEAD, b"{}")
            outlet = Outlet(writable=False)
            taken = outlet.taken
            response.splice(outlet)  # type: ignore[arg-type]
            reading = asyncio.ensure_future(response.read_chunk())
            await asyncio.sleep(0)  # the reader is waiting
            await engine.part(b"a")  # not writable: the reader wakes with it
            assert await reading == b"a"
            # While the reader holds "a" (as if writing it out), later parts wait for it,
            # even though the outlet would take them now.
            outlet.writable = True
            await engine.part(b"b")
            await engine.part(b"c")
            arrived = response._connection.chunks  # both parts read, neither written
            await until(lambda: b"".join(arrived) == b"bc")
            assert taken == []
            assert await response.read_chunk() == b"bc"
            # Back in the reader's wait, the outlet takes what comes.
            reading = asyncio.ensure_future(response.read_chunk())
            await asyncio.sleep(0)  # the reader is waiting
            await engine.part(b"d")
            await until(lambda: taken == [b"d"])
            response.splice(None)
            await engine.part(b"e")
            assert await reading == b"e"
            response.close()
        await engine.done.wait()

    run(scenario())
