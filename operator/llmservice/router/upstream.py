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

An outlet that speaks HTTP/1.1 chunked framing itself can take the engine's own frames
(``splice(outlet, frames=True)``): each read is written as it came, not framed again (the
framing was a sixth of a streamed part's instructions). The engine's bytes are still parsed
first, and a read the parser refuses is not written. It needs the body read before the
splice to end on a frame boundary the router knows: the read that ended the head must
have ended there or gone on with whole frames only, and so must every read since (the
common case: an engine sends its head before its first token, and the first tokens'
frames whole; the router then frames those parts again, as one). Otherwise the body is
framed again as above. From then on every byte of the body goes to the outlet or the
reader as it came, the end of the body included, so the framing the client gets is
exactly the engine's. A response broken off part-way can be followed by a part of the
router's own only if the bytes passed on end on a frame boundary, which
`Response.at_frame_end` finds out once, then.
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
_TAIL_PARTS = 8  # the last body parts kept while the engine's frames are passed on (usage)
_HEAD_END = b"\r\n\r\n"
_CHUNKED = b"chunked"
_LAST_CHUNK = b"0\r\n\r\n"


class Outlet(Protocol):
    """Where `Response.splice` writes a body's parts (`llmservice.router.client_connection`).

    ``transport`` takes each part as one HTTP/1.1 chunk while ``writable`` (or the engine's
    own frames, `Response.splice`); the parts written are noted as they go: the first one's
    time (``clock()``) in ``first_at``, and the last two in ``previous`` and ``last`` (not
    while the engine's frames are passed on: then `Response.body_tail` has them).
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


def _whole_frames(data: bytes, start: int) -> bool:
    """Whether ``data[start:]`` is whole chunk frames (or nothing), read by their sizes.

    ``data`` is valid chunked framing (the parser took it), a frame being a size in hex, an
    optional extension after ";", CRLF, that many bytes and CRLF; the last chunk (size 0)
    ends the body, and is not counted as a frame here.
    """
    end = len(data)
    at = start
    while at < end:
        line_end = data.find(b"\r\n", at)
        if line_end < 0:
            return False
        try:
            size = int(data[at:line_end].partition(b";")[0], 16)
        except ValueError:
            return False
        if size == 0:
            return False
        at = line_end + size + 4
    return at == end


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
        # The engine's own bytes of the body, for the reader, while they are passed on as
        # they came (`Response.splice` with ``frames``); `chunks` then keeps only a tail.
        self.frames: collections.deque[bytes] = collections.deque()
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
        self.head_end_read = -1  # the read in which the head ended
        self.frame_end_read = -1  # the last read after which the body ended on a frame's end
        self.pass_frames = False  # the body's reads go on as they came
        self.chunks.clear()
        self.frames.clear()
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
        outlet = self.outlet
        # Written only while the reader waits: it has passed on all it was given, so nothing
        # written here can overtake a part it holds. The end of the body is the reader's.
        if self.pass_frames:
            # The engine's frames as they came; its parts are kept only for the usage's tail.
            if len(chunks) > _TAIL_PARTS:
                for _ in range(_TAIL_PARTS // 2):
                    chunks.popleft()
            if (
                outlet is not None
                and outlet.writable
                and self.waiter is not None
                and not self.complete
            ):
                outlet.transport.write(data)
                if outlet.first_at is None:
                    outlet.first_at = outlet.clock()
                return
            self.frames.append(data)
        elif not chunks:
            if outlet is None:
                self._note_frame_end(data)
            return
        elif (
            outlet is not None and outlet.writable and self.waiter is not None and not self.complete
        ):
            # The body written is this read's, after any the outlet did not take before (then
            # the reader is awake).
            body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            chunks.clear()
            outlet.transport.write(b"%x\r\n%b\r\n" % (len(body), body))
            # Noted here, as `client_connection.PartsSent.sent` would: a call less per part.
            if outlet.first_at is None:
                outlet.first_at = outlet.clock()
            outlet.previous, outlet.last = outlet.last, body
            return
        elif outlet is None:
            self._note_frame_end(data)
        self._wake()  # the reader takes what the outlet did not
        # Held for the reader. The read's length bounds the body it brought (its framing
        # counts too, so reading pauses a little early, never late).
        self.buffered += len(data)
        if self.buffered > _MAX_BUFFER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def _note_frame_end(self, data: bytes) -> None:
        """Before a splice: note whether the body read so far ends on a chunk frame's end,
        as it does when every read since the head's end was whole frames (see
        `Response.splice`). The parser has accepted ``data``: only the boundaries are looked
        for, and a read that is not whole frames stops the count for this response."""
        reads = self.reads
        if not self.head_done or self.complete:
            return
        if self.head_end_read == reads:
            # The head ends at its first blank line when it is all in this read and every
            # line of it ends in CRLF.
            blank = data.find(_HEAD_END)
            start = blank + len(_HEAD_END)
            if (
                reads != 1
                or blank < 0
                or data.count(b"\n", 0, start) != data.count(b"\r\n", 0, start)
            ):
                return
        elif self.frame_end_read == reads - 1:
            start = 0
        else:
            return
        if _whole_frames(data, start):
            self.frame_end_read = reads

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
        self.head_end_read = self.reads
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
        held = connection.frames if connection.pass_frames else connection.chunks
        return connection.complete and not held

    async def read_chunk(self) -> bytes:
        """The body that arrived since the last call (waiting for some); b"" at the end.

        While the engine's frames are passed on (`splice` with ``frames``), the engine's
        bytes as they came: whole or partial chunk frames, the last chunk's included.
        """
        connection = self._connection
        while True:
            chunks = connection.frames if connection.pass_frames else connection.chunks
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

    def splice(self, outlet: Outlet | None, *, frames: bool = False) -> bool:
        """Write the body to ``outlet`` as it arrives, or stop (None); see the module docstring.

        A read's body goes to the outlet only while it is writable and the reader waits in
        `read_chunk`: a part `read_chunk` returned is passed on before the next one is
        written. What the outlet does not take, the end of the body and errors still come
        through `read_chunk`, which then waits for nothing else.

        ``frames``: the outlet takes chunk frames as they are. Returns whether the engine's
        own frames are passed on from now on (for the rest of the body, `read_chunk`'s
        included): the answer is chunked and its body so far ends on a frame boundary (see
        the module docstring).
        """
        connection = self._connection
        connection.outlet = outlet
        if (
            frames
            and not connection.pass_frames
            and connection.frame_end_read == connection.reads
            and not connection.complete
            and connection.error is None
            and (self.header(b"transfer-encoding") or b"").strip().lower() == _CHUNKED
        ):
            connection.pass_frames = True
            chunks = connection.chunks
            if chunks:  # whole frames the reader has not taken: framed again, as one
                body = b"".join(chunks)
                connection.frames.append(b"%x\r\n%b\r\n" % (len(body), body))
                # (and kept in `chunks`: the usage's tail, if the body is that short)
        return connection.pass_frames

    def body_tail(self) -> bytes:
        """The last parts of a body whose frames were passed on (its usage is in them)."""
        return b"".join(self._connection.chunks)

    def at_frame_end(self) -> bool:
        """Whether what went on of a body whose frames are passed on ends on a frame
        boundary, so that a part of the router's own can follow (a broken-off stream's
        error event). Asked once, when the body is broken off; the connection is not
        reused after.

        The parser is given a last chunk: it ends the body there, without a part, only
        where a frame had ended. Frames held for the reader were not passed on: then no.
        """
        connection = self._connection
        if connection.frames or connection.complete:
            return False
        held = len(connection.chunks)
        try:
            connection.parser.feed_data(_LAST_CHUNK)
        except httptools.HttpParserError:
            return False
        finally:
            connection.keep_alive = False  # the probe's message is not the engine's
        return connection.complete and len(connection.chunks) == held

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
