"""A request's client connection, past ASGI: streamed parts written at once, and hang-ups.

Two things ASGI makes a request pay for with a task's wake-up, measured on one core:

- **Each streamed part.** Through ASGI a part wakes the request's task, resumes its
  coroutines and goes through uvicorn's ``send``; going past them cut the router's CPU per
  streamed chunk by about 15% (bench/README.md). A `PartWriter`
  (`ClientConnection.part_writer`) is the outlet the engine connection's own read callback
  (`llmservice.router.upstream.Response.splice`) writes each part to, framed as uvicorn's
  ``send`` would have: the client's transport, and whether it takes writes now.
- **Noticing a hang-up.** ASGI reports one only to a pending ``receive()``: a task per
  request, kept waiting for the length of a stream, about 70 us of CPU per stream.
  `ClientConnection.on_disconnect` registers a callback the server's protocol calls from
  its ``connection_lost`` instead.

The server's protocol (`llmservice.router.http_limits`) offers the connection under
`SCOPE_KEY` in each request's ASGI scope (`offer`), reports hang-ups (`disconnected`,
`gone`) and tells the connection's writer when the client's transport stops or starts
taking writes (`writing`). The writer is used only between ``http.response.start`` and
the last body part of a chunked answer: the head and the end of the answer still go
through ``send``, which keeps uvicorn's own bookkeeping (keep-alive, completion) in charge.
While the client is gone or not taking more (uvicorn's flow control has paused writing)
the writer is not ``writable``, and the parts are left to ``send``, which waits for the
client as usual. The flag is kept by those events rather than read from uvicorn's state
for each part: reading it there would take a Python call per part. An app served by
another server finds no connection in its scope and falls back to plain ASGI.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

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


class ClientConnection:
    """One request's client connection (see the module docstring)."""

    __slots__ = ("_cycle",)

    def __init__(self, cycle: RequestResponseCycle) -> None:
        self._cycle = cycle

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
