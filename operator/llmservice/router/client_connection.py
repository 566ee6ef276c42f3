"""A request's client connection, past ASGI: streamed parts written at once, and hang-ups.

Two things ASGI makes a request pay for with a task's wake-up, measured on one core:

- **Each streamed part.** Through ASGI a part wakes the request's task, resumes its
  coroutines and goes through uvicorn's ``send``; going past them cut the router's CPU per
  streamed chunk by about 15% (bench/README.md). `ClientConnection.write` lets the engine
  connection's own read callback (`llmservice.router.upstream.Response.splice`) frame a
  part and write it to the client's transport at once, as uvicorn's ``send`` would have.
- **Noticing a hang-up.** ASGI reports one only to a pending ``receive()``: a task per
  request, kept waiting for the length of a stream, about 70 us of CPU per stream.
  `ClientConnection.on_disconnect` registers a callback the server's protocol calls from
  its ``connection_lost`` instead.

The server's protocol (`llmservice.router.http_limits`) offers the connection under
`SCOPE_KEY` in each request's ASGI scope (`offer`) and reports hang-ups (`disconnected`).
The writer is used only between ``http.response.start`` and the last body part of a chunked
answer: the head and the end of the answer still go through ``send``, which keeps uvicorn's
own bookkeeping (keep-alive, completion) in charge. A write is declined, and the part left
to ``send``, when the client is gone or not taking more (uvicorn's flow control has paused
writing): ``send`` then waits for it as usual. An app served by another server finds no
connection in its scope and falls back to plain ASGI.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

__all__ = ["SCOPE_KEY", "ClientConnection", "client_connection", "disconnected", "offer"]

SCOPE_KEY = "llmservice.client_connection"
# The callback's place on the cycle: uvicorn's cycle has no slot of its own for it.
_CALLBACK = "_llmservice_on_disconnect"


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

    def write(self, body: bytes) -> bool:
        """Write ``body`` (not empty) as one chunk; False, writing nothing, if not now."""
        cycle = self._cycle
        if cycle.disconnected or cycle.flow.write_paused:
            return False
        cycle.transport.write(b"%x\r\n%b\r\n" % (len(body), body))
        return True

    def on_disconnect(self, callback: Callable[[], None] | None) -> None:
        """Call ``callback`` if the client hangs up before the answer is complete (None:
        stop); at once if it already has."""
        cycle = self._cycle
        if callback is not None and cycle.disconnected and not cycle.response_complete:
            callback()  # gone before this was asked: the server will not report it again
            return
        setattr(cycle, _CALLBACK, callback)


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
