"""A small pooled HTTP/1.1 client for the engines: asyncio protocols and httptools' parser.

Why not a general client: measured on one core at 32 concurrent requests against a
trivial backend (bench/client_choice.py), httpx's AsyncClient managed a few hundred
requests per second, aiohttp's client about 6,000, and this client several times that.
At a router's request rates the upstream client is most of the CPU, and the router needs
only a sliver of HTTP: POST a body to a few known engines over plain HTTP/1.1, stream the
answer back, keep connections alive. Everything else (redirects, cookies, proxies, TLS,
compression) is deliberately absent; the body bytes pass through untouched.

Errors are one small tree, split by what they mean for a retry:

- `ConnectError`: no connection could be made (refused, unreachable, connect timeout:
  ``timed_out``); the engine never saw the request.
- `DisconnectedError`: the connection broke. ``before_response`` tells whether any
  response byte had arrived; ``reused`` whether the connection had served a request
  before (a pooled keep-alive connection the engine had already closed shows up with both
  True, and says nothing about the engine's health).
- `ProtocolError`: the engine sent something that is not HTTP/1.1.

Pool: idle connections are kept per (host, port) for ``keepalive`` seconds, or less when
the engine's ``Keep-Alive: timeout=N`` says it closes them sooner (one second of margin);
an answer with ``Connection: close`` (or HTTP/1.0 without keep-alive) is never reused.
At most ``limit`` connections are open per pool. Idle connections must not starve a request
to another engine: when the pool is full, a request that needs a new connection closes the
oldest idle one to make room, and a connection coming back idle while requests wait for
room is closed instead of kept (the rule httpcore follows). A response body must be read
to the end (then the connection is reused) or the response closed (then it is dropped).

Back-pressure: at most ``_MAX_BUFFER`` bytes of body wait unread per connection; past that
the connection stops reading from the engine until the reader catches up, so a slow
client holds the engine back through TCP instead of growing the router's memory.

A streamed body can bypass the reader (`Response.splice`): the body that arrived with each
read is written, in the connection's own callback, to an *outlet*: a client's transport,
framed as one HTTP/1.1 chunk. Waking a task per chunk costs more than the rest of a proxied
chunk's path together, and so did a Python call per part to a writer of the client's side
(about 1,000 instructions of 9,300; bench/README.md): the callback writes the chunk itself,
while the outlet says it is ``writable`` (the client's side keeps that flag, on the events
that change it). The reader is woken only for what the outlet does not take (the client is
not taking more: the chunks are buffered and read as usual, in order), for the end of the
body and for an error.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from types import TracebackType
from typing import Protocol

import httptools

from llmservice.router.config import DEFAULT_UPSTREAM_KEEPALIVE

__all__ = [
    "ConnectError",
    "DisconnectedError",
    "Pool",
    "ProtocolError",
    "Response",
    "UpstreamError",
]

_MAX_BUFFER = 256 * 1024  # pause reading from the engine past this much unread body


class Outlet(Protocol):
    """Where `Response.splice` writes a body's parts (`llmservice.router.client_connection`).

    ``transport`` takes each part as one HTTP/1.1 chunk while ``writable``; the parts
    written are noted as they go: the first one's time (``clock()``) in ``first_at``, and
    the last two in ``previous`` and ``last``.
    """

    transport: asyncio.WriteTransport
    writable: bool
    first_at: float | None
    previous: bytes
    last: bytes

    def clock(self) -> float: ...


class UpstreamError(Exception):
    """Base of the client's errors."""


class ConnectError(UpstreamError):
    """No connection: the request never reached the engine; ``timed_out`` for a timeout."""

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


class DisconnectedError(UpstreamError):
    """The connection broke; ``before_response`` if no response byte had arrived.

    ``reused``: the connection had served an earlier request (set by the pool).
    """

    def __init__(self, message: str, *, before_response: bool, reused: bool = False) -> None:
        super().__init__(message)
        self.before_response = before_response
        self.reused = reused


class ProtocolError(UpstreamError):
    """The engine's bytes were not a valid HTTP/1.1 response."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection; parses responses and buffers their body chunks."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        # httptools takes its callbacks when the parser is made. The body goes straight into
        # `chunks` (a call in C, no Python frame for every part of a stream);
        # `data_received` looks at what a read brought once the read is parsed.
        self.chunks: collections.deque[bytes] = collections.deque()
        self.on_body: Callable[[bytes], None] = self.chunks.append
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        self.expires = 0.0  # when an idle connection stops being reused
        self.used = 0  # requests sent on it
        self.key: tuple[str, int] = ("", 0)
        self.on_lost: Callable[[_Connection], None] | None = None
        self._reset()

    def header(self, name: bytes) -> bytes | None:
        """The first value of response header ``name`` (lowercase), or None."""
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def _reset(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []  # names lowercased as they are parsed
        self.status = 0
        self.head_done = False
        self.complete = False
        self.keep_alive = False
        self.reads = 0  # reads that brought bytes of this response (its progress)
        self.chunks.clear()
        self.buffered = 0
        self.paused = False
        self.error: UpstreamError | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.outlet: Outlet | None = None  # see `Response.splice`

    # -- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reads += 1
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._fail(ProtocolError(f"invalid HTTP response: {error}"))
            if self.transport is not None:
                self.transport.close()
            return
        chunks = self.chunks
        if not chunks:
            return
        outlet = self.outlet
        # Written only while the reader waits: it has passed on all it was given, so nothing
        # written here can overtake a part it holds. The body written is this read's, after
        # any the outlet did not take before (then the reader is awake).
        if outlet is not None and outlet.writable and self.waiter is not None and not self.complete:
            body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            chunks.clear()
            outlet.transport.write(b"%x\r\n%b\r\n" % (len(body), body))
            # Noted here, as `client_connection.PartsSent.sent` would: a call less per part.
            if outlet.first_at is None:
                outlet.first_at = outlet.clock()
            outlet.previous, outlet.last = outlet.last, body
            return
        self._wake()  # the reader takes what the outlet did not
        # Held for the reader. The read's length bounds the body it brought (its framing
        # counts too, so reading pauses a little early, never late).
        self.buffered += len(data)
        if self.buffered > _MAX_BUFFER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.head_done and not self.complete and self._until_close():
            self.complete = True  # a body delimited by the end of the connection
            self._wake()
        if not self.complete:
            self._fail(
                DisconnectedError(
                    "the engine closed the connection", before_response=not self.reads
                )
            )
        if self.on_lost is not None:
            self.on_lost(self)

    def pause_writing(self) -> None:  # bodies are small; the kernel buffer absorbs them
        return None

    def resume_writing(self) -> None:
        return None

    def _until_close(self) -> bool:
        return not any(
            name in (b"content-length", b"transfer-encoding") for name, _ in self.headers
        )

    # -- httptools callbacks -------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        # Lowercased once here: every later look-up and the relay compare lowercase names.
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.head_done = True
        self._wake()

    def on_message_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()  # only valid until this returns
        self.complete = True
        self._wake()

    # -- plumbing ------------------------------------------------------------------------

    def _fail(self, error: UpstreamError) -> None:
        if self.error is None:
            self.error = error
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def wait(self) -> None:
        waiter = self.loop.create_future()
        self.waiter = waiter
        await waiter

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


class Response:
    """Status, headers (names lowercase) and a body to read chunk by chunk (`read_chunk`)."""

    def __init__(self, pool: Pool, connection: _Connection) -> None:
        self._pool = pool
        self._connection = connection
        self.status = connection.status
        self.headers = connection.headers
        self._released = False

    def header(self, name: bytes) -> bytes | None:
        """The first value of header ``name`` (lowercase), or None."""
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def reads(self) -> int:
        """How many reads from the engine have brought bytes of this response so far: its
        progress, for a watchdog (`llmservice.router.deadlines.Watchdog.enter`)."""
        return self._connection.reads

    @property
    def ended(self) -> bool:
        """Whether the whole body has arrived and been read (`read_chunk` would give b"")."""
        connection = self._connection
        return connection.complete and not connection.chunks

    async def read_chunk(self) -> bytes:
        """The body that arrived since the last call (waiting for some); b"" at the end."""
        connection = self._connection
        while True:
            chunks = connection.chunks
            if chunks:
                # Whatever has arrived goes out together: no added latency, fewer writes.
                chunk = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
                chunks.clear()
                connection.buffered = 0
                if connection.paused and connection.buffered < _MAX_BUFFER // 2:
                    connection.paused = False
                    if connection.transport is not None:
                        connection.transport.resume_reading()
                return chunk
            if connection.complete:
                self.close()
                return b""
            if connection.error is not None:
                raise connection.error
            # `_Connection.wait`, inlined: one coroutine less to resume on every chunk.
            waiter = connection.loop.create_future()
            connection.waiter = waiter
            await waiter

    def splice(self, outlet: Outlet | None) -> None:
        """Write the body to ``outlet`` as it arrives, or stop (None); see the module docstring.

        A read's body goes to the outlet only while it is writable and the reader waits in
        `read_chunk`: a part `read_chunk` returned is passed on before the next one is
        written. What the outlet does not take, the end of the body and errors still come
        through `read_chunk`, which then waits for nothing else.
        """
        self._connection.outlet = outlet

    def close(self) -> None:
        """Give the connection back when the body was read whole, else drop it."""
        if self._released:
            return
        self._released = True
        self._pool.release(self._connection)


class Pool:
    """Keep-alive connections to the engines, bounded by ``limit`` open connections."""

    def __init__(
        self,
        *,
        limit: int,
        connect_timeout: float,
        keepalive: float = DEFAULT_UPSTREAM_KEEPALIVE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.connect_timeout = connect_timeout
        self.keepalive = keepalive
        self._clock = clock
        self._idle: dict[tuple[str, int], list[_Connection]] = {}
        self._slots = asyncio.Semaphore(limit)
        self._waiting = 0  # requests waiting for room in the pool
        self._open: set[_Connection] = set()

    async def _connect(self, host: str, port: int) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, protocol = await loop.create_connection(lambda: _Connection(loop), host, port)
        except TimeoutError:
            raise ConnectError(f"connect to {host}:{port} timed out", timed_out=True) from None
        except OSError as error:
            raise ConnectError(f"connect to {host}:{port} failed: {error.strerror}") from None
        protocol.key = (host, port)
        protocol.on_lost = self._lost
        return protocol

    def _lost(self, connection: _Connection) -> None:
        """An idle connection the engine closed frees its slot at once."""
        idle = self._idle.get(connection.key)
        if idle and connection in idle:
            idle.remove(connection)
            self._drop(connection)
            if not idle:  # engines come and go: keep no entry for one that left
                del self._idle[connection.key]

    def _take_idle(self, key: tuple[str, int]) -> _Connection | None:
        idle = self._idle.get(key)
        now = self._clock()
        while idle:
            connection = idle.pop()
            if not connection.closed and connection.expires > now:
                return connection
            self._drop(connection)
        self._idle.pop(key, None)
        return None

    def _evict_idle(self) -> None:
        """Close the idle connection that has waited longest, to make room for another."""
        oldest: _Connection | None = None
        for connections in self._idle.values():
            if connections and (oldest is None or connections[0].idle_since < oldest.idle_since):
                oldest = connections[0]
        if oldest is not None:
            idle = self._idle[oldest.key]
            idle.remove(oldest)
            if not idle:
                del self._idle[oldest.key]
            self._drop(oldest)

    def _expiry(self, connection: _Connection, now: float) -> float:
        """When an idle ``connection`` stops being reused: ours, or the engine's sooner."""
        keepalive = self.keepalive
        value = connection.header(b"keep-alive")
        if value is not None:
            for part in value.split(b","):
                name, _, number = part.strip().partition(b"=")
                if name.strip().lower() == b"timeout" and number.strip().isdigit():
                    keepalive = min(keepalive, int(number) - 1.0)
        return now + keepalive

    def _drop(self, connection: _Connection) -> None:
        connection.abort()
        if connection in self._open:
            self._open.discard(connection)
            self._slots.release()

    async def request(
        self, host: str, port: int, head: bytes, body: bytes, *, fresh: bool = False
    ) -> Response:
        """Send ``head`` (request line and headers, without the blank line) and ``body``.

        Returns once the response headers are in; the caller reads or closes the body.
        ``fresh`` skips the idle connections and opens a new one.
        """
        key = (host, port)
        connection = None if fresh else self._take_idle(key)
        if connection is None:
            if self._slots.locked():
                self._evict_idle()
            self._waiting += 1
            try:
                await self._slots.acquire()
            finally:
                self._waiting -= 1
            try:
                connection = await self._connect(host, port)
            except BaseException:
                self._slots.release()
                raise
            self._open.add(connection)
        reused = connection.used > 0
        connection.used += 1
        try:
            connection._reset()
            transport = connection.transport
            if transport is None or transport.is_closing():
                raise DisconnectedError(
                    "the connection is closed", before_response=True, reused=reused
                )
            # One writev of the head and the body: the body is not copied onto the head's
            # end (14,000 instructions with a 14 KB prompt), and a short one costs no more.
            transport.writelines((head + b"\r\nContent-Length: %d\r\n\r\n" % len(body), body))
            while not connection.head_done:
                if connection.error is not None:
                    error = connection.error
                    if isinstance(error, DisconnectedError):
                        error.reused = reused
                    raise error
                await connection.wait()
        except BaseException:
            self._drop(connection)
            raise
        return Response(self, connection)

    def release(self, connection: _Connection) -> None:
        if (
            connection.complete
            and connection.keep_alive
            and not connection.closed
            and not self._waiting  # a request waits for room: give it this connection's
        ):
            now = self._clock()
            connection.idle_since = now
            connection.expires = self._expiry(connection, now)
            self._idle.setdefault(connection.key, []).append(connection)
        else:
            self._drop(connection)

    async def close(self) -> None:
        for connection in list(self._open):
            self._drop(connection)
        self._idle.clear()
        await asyncio.sleep(0)

    async def __aenter__(self) -> Pool:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
