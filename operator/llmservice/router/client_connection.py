"""A request's client connection, past ASGI: its body, its answer, streamed parts, hang-ups.

Through ASGI every request pays for messages: a ``receive()`` for its body, a ``send`` for
its answer's head and another for each body part, each a coroutine that checks and frames
what it is given; and a hang-up is heard only by a pending ``receive()``. Under the
router's own server a request's `ClientConnection` goes past them, measured on one core
(bench/README.md):

- **The body.** `take_body` hands over a body that has all arrived with its head (almost
  every request's), without a ``receive()``.
- **The answer.** `start` frames the head as uvicorn's ``send`` would (its ``Date``, the
  ``Connection: close`` of a connection that will not be kept alive, the framing) and
  holds it; `write` sends it with the first body part, in one ``writev``, and the last
  part completes the answer with the cycle's own bookkeeping (keep-alive, the next
  pipelined request). What uvicorn's ``send`` would refuse, or frame in a way of its own,
  `start` leaves to it: an answer already started, a HEAD request, a header that is not
  lowercase or not valid, framing headers of the app's own, a client that takes no writes
  now or is gone. The app then sends through ASGI as before.
- **Each streamed part.** Through ASGI a part wakes the request's task, resumes its
  coroutines and goes through uvicorn's ``send``; going past them cut the router's CPU per
  streamed chunk by about 15%. A `PartWriter` (`ClientConnection.part_writer`) is the
  outlet the engine connection's own read callback
  (`llmservice.router.upstream.Response.splice`) writes each part to: the client's
  transport, and whether it takes writes now.
- **Noticing a hang-up.** ASGI reports one only to a pending ``receive()``: a task per
  request, kept waiting for the length of a stream, about 70 us of CPU per stream.
  `ClientConnection.on_disconnect` registers a callback the server's protocol calls from
  its ``connection_lost`` instead.

The server's protocol (`llmservice.router.http_limits`) offers the connection under
`SCOPE_KEY` in each request's ASGI scope (`offer`), reports hang-ups (`disconnected`,
`gone`) and tells the connection's writer when the client's transport stops or starts
taking writes (`writing`). While the client is gone or not taking more (uvicorn's flow
control has paused writing) the writer is not ``writable``, and the parts are left to the
request's task, which waits for the client (`ClientConnection.drain`). The flag is kept by
those events rather than read from uvicorn's state for each part: reading it there would
take a Python call per part. An app served by another server finds no connection in its
scope and keeps to plain ASGI.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import (
    HEADER_RE,
    HEADER_VALUE_RE,
    STATUS_LINE,
    RequestResponseCycle,
)

__all__ = [
    "SCOPE_KEY",
    "ClientConnection",
    "PartWriter",
    "PartsSent",
    "client_connection",
    "disconnected",
    "gone",
    "offer",
    "writing",
]

SCOPE_KEY = "llmservice.client_connection"
# The callback's place on the cycle: uvicorn's cycle has no slot of its own for it.
_CALLBACK = "_llmservice_on_disconnect"
# The latest writer's place on the connection's flow control, which uvicorn shares between
# the connection's requests (one answer is written at a time) and which the events that
# change a writer's flag reach (`writing`).
_WRITER = "_llmservice_part_writer"
# Headers whose meaning uvicorn's ``send`` acts on itself: an answer with one of them is left
# to it. (`start` adds the framing header of its own answers.)
_FRAMING = frozenset({b"transfer-encoding", b"connection"})
_CONTENT_LENGTH = b"content-length"
_END = b"0\r\n\r\n"


class ClientConnection:
    """One request's client connection (see the module docstring)."""

    __slots__ = ("_cycle", "_head")

    def __init__(self, cycle: RequestResponseCycle) -> None:
        self._cycle = cycle
        self._head: bytes | None = None  # framed by `start`, written with the first part

    def take_body(self) -> bytes | None:
        """The request's whole body if it has all arrived, taken as ``receive()`` would
        take it; None when it has not (or the request is over): read it with ``receive()``."""
        cycle = self._cycle
        if cycle.more_body or cycle.disconnected or cycle.response_complete:
            return None
        # The server's protocol may hold a body that came in one piece as the parser's own
        # bytes (`http_limits`), which uvicorn types as its bytearray.
        body: bytes | bytearray = cycle.body
        cycle.body = bytearray()
        cycle.message_event.clear()  # a later receive() waits, as after uvicorn's last one
        cycle.flow.resume_reading()  # as receive() does: a large body paused the reads
        return body if type(body) is bytes else bytes(body)

    def start(self, status: int, headers: list[tuple[bytes, bytes]], *, chunked: bool) -> bool:
        """Frame the answer's head and hold it for the first `write`; False (nothing done)
        when the answer must go through ``send`` (see the module docstring).

        ``headers`` are lowercase; an answer that is not ``chunked`` has a Content-Length.
        """
        cycle = self._cycle
        if (
            cycle.response_started
            or cycle.disconnected
            or cycle.flow.write_paused
            or cycle.scope["method"] == "HEAD"
        ):
            return False
        # Checked together: a byte uvicorn refuses in one name or value is in their join.
        names = b"".join([name for name, _ in headers])
        if (
            (names and not names.islower())
            or HEADER_RE.search(names)
            or HEADER_VALUE_RE.search(b"".join([value for _, value in headers]))
        ):
            return False
        content = [STATUS_LINE[status]]
        for name, value in cycle.default_headers:
            content += (name, b": ", value, b"\r\n")
        length = None
        for name, value in headers:
            if name in _FRAMING:
                return False
            if name == _CONTENT_LENGTH and length is None:
                length = value
            content += (name, b": ", value, b"\r\n")
        if not cycle.keep_alive:
            content.append(b"connection: close\r\n")
        if chunked:
            if length is not None:
                return False
            content.append(b"transfer-encoding: chunked\r\n\r\n")
        else:
            if length is None or not length.isdigit():
                return False
            content.append(b"\r\n")
            cycle.expected_content_length = int(length)
        cycle.chunked_encoding = chunked
        cycle.response_started = True
        cycle.waiting_for_100_continue = False
        self._head = b"".join(content)
        return True

    def write(self, body: bytes, more: bool) -> None:
        """Write a part of the answer `start` began (the head too, the first time), framed;
        the last part (``more`` false) completes it. Nothing is written to a client gone."""
        cycle = self._cycle
        if cycle.disconnected:
            return
        transport = cycle.transport
        head = self._head
        self._head = None
        if cycle.chunked_encoding:
            parts = [head] if head else []
            if body:
                parts += (b"%x\r\n" % len(body), body, b"\r\n")
            if not more:
                parts.append(_END)
            transport.writelines(parts)
        else:
            left = cycle.expected_content_length - len(body)
            if left < 0:  # as uvicorn's send: the app broke its own framing
                raise RuntimeError("Response content longer than Content-Length")
            if left and not more:
                raise RuntimeError("Response content shorter than Content-Length")
            cycle.expected_content_length = left
            if head:
                transport.writelines((head, body))
            else:
                transport.write(body)
        if not more:
            self._complete()

    def write_frames(self, frames: bytes, more: bool) -> None:
        """Write chunk frames of a chunked answer `start` began, as they are (the engine's
        own, `llmservice.router.upstream.Response.splice`); the last ones (``more`` false)
        end with the last chunk and complete the answer."""
        cycle = self._cycle
        if cycle.disconnected:
            return
        head = self._head
        self._head = None
        if head:
            cycle.transport.writelines((head, frames))
        elif frames:
            cycle.transport.write(frames)
        if not more:
            self._complete()

    def _complete(self) -> None:
        """The answer is all written: the cycle's bookkeeping, as uvicorn's ``send``'s."""
        cycle = self._cycle
        cycle.response_complete = True
        cycle.message_event.set()
        if not cycle.keep_alive:
            cycle.transport.close()
        cycle.on_response()

    def flush(self) -> None:
        """Write a head `start` holds, alone: an answer cut off before its first part."""
        head = self._head
        self._head = None
        cycle = self._cycle
        if head is not None and not cycle.disconnected:
            cycle.transport.write(head)

    @property
    def paused(self) -> bool:
        """Whether the client takes no writes now (`drain` waits until it does)."""
        cycle = self._cycle
        return cycle.flow.write_paused and not cycle.disconnected

    async def drain(self) -> None:
        """Wait until the client takes writes again (or is gone)."""
        await self._cycle.flow.drain()

    @property
    def streaming(self) -> bool:
        """Whether the answer's head went out with chunked framing and it is not complete."""
        cycle = self._cycle
        return (
            cycle.response_started
            and cycle.chunked_encoding is True
            and not cycle.response_complete
            and not cycle.disconnected
        )

    def part_writer(self, clock: Callable[[], float]) -> PartWriter:
        """The outlet of this answer's body parts, timed by ``clock`` (after its head)."""
        cycle = self._cycle
        flow = cycle.flow
        writer = PartWriter(clock, cycle.transport)
        writer.writable = not (cycle.disconnected or flow.write_paused)
        setattr(flow, _WRITER, writer)
        return writer

    def on_disconnect(self, callback: Callable[[], None] | None) -> None:
        """Call ``callback`` if the client hangs up before the answer is complete (None:
        stop); at once if it already has."""
        cycle = self._cycle
        if callback is not None and cycle.disconnected and not cycle.response_complete:
            callback()  # gone before this was asked: the server will not report it again
            return
        setattr(cycle, _CALLBACK, callback)


class PartsSent:
    """What went out of an answer's body: when its first part did, and its last two parts
    (an SSE answer's usage is in them)."""

    __slots__ = ("clock", "first_at", "last", "previous")

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.first_at: float | None = None
        self.previous = self.last = b""

    def sent(self, body: bytes) -> None:
        """Note ``body`` as sent (by the request's task, through ``send``)."""
        if self.first_at is None:
            self.first_at = self.clock()
        self.previous, self.last = self.last, body


class PartWriter(PartsSent):
    """`PartsSent` whose parts the engine connection writes to ``transport`` itself while
    ``writable``: an `llmservice.router.upstream.Outlet`."""

    __slots__ = ("transport", "writable")

    def __init__(self, clock: Callable[[], float], transport: asyncio.WriteTransport) -> None:
        super().__init__(clock)
        self.transport = transport
        self.writable = False


def writing(flow: FlowControl, writable: bool) -> None:
    """The server's part: the client's transport (of ``flow``) takes writes again, or no
    longer (it paused writing)."""
    writer: PartWriter | None = getattr(flow, _WRITER, None)
    if writer is not None:
        writer.writable = writable


def gone(flow: FlowControl) -> None:
    """The server's part: the client's connection (of ``flow``) is lost; its writer stops
    for good."""
    writer: PartWriter | None = getattr(flow, _WRITER, None)
    if writer is not None:
        writer.writable = False
        setattr(flow, _WRITER, None)


def offer(cycle: RequestResponseCycle) -> None:
    """Put ``cycle``'s connection in its scope (the object is made when it is asked for)."""
    # A weak reference: the cycle holds the scope, and a strong one back would leave every
    # request's cycle and scope to the garbage collector, whose passes cost milliseconds.
    cycle.scope[SCOPE_KEY] = weakref.ref(cycle)  # type: ignore[literal-required]


def disconnected(cycle: RequestResponseCycle) -> None:
    """The server's part: ``cycle``'s client hung up; call its callback, if any."""
    callback = getattr(cycle, _CALLBACK, None)
    if callback is not None and not cycle.response_complete:
        setattr(cycle, _CALLBACK, None)
        callback()


def client_connection(scope: Any) -> ClientConnection | None:
    """The request's `ClientConnection`, or None when its server offers none."""
    reference = scope.get(SCOPE_KEY)
    cycle = None if reference is None else reference()
    return None if cycle is None else ClientConnection(cycle)
