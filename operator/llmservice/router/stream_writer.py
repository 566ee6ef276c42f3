"""Streamed body parts written straight to the client's connection, past ASGI's ``send``.

A token stream is many small body parts. Through ASGI each one wakes the request's task,
resumes its coroutines and goes through uvicorn's ``send``: measured on one core, that
was two thirds of the router's CPU per streamed chunk. `StreamWriter` lets the engine
connection's own read callback (`llmservice.router.upstream.Response.splice`) frame a part
and write it to the client's transport at once, as uvicorn's ``send`` would have.

It is offered per request by the server's protocol (`llmservice.router.http_limits`) under
`SCOPE_KEY` in the ASGI scope, and used only between ``http.response.start`` and the last
body part of a chunked answer: the head and the end of the answer still go through
``send``, which keeps uvicorn's own bookkeeping (keep-alive, completion) in charge. A write
is declined, and the part left to ``send``, when the client is gone or is not taking more
(uvicorn's flow control has paused writing): ``send`` then waits for it as usual.
"""

from __future__ import annotations

import weakref
from typing import Any

from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

__all__ = ["SCOPE_KEY", "StreamWriter", "offer_stream_writer", "stream_writer"]

SCOPE_KEY = "llmservice.stream_writer"


class StreamWriter:
    """Writes body parts of one request's chunked answer to the client's transport."""

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


def offer_stream_writer(cycle: RequestResponseCycle) -> None:
    """Put ``cycle``'s writer in its scope (made when a stream asks for it)."""
    # A weak reference: the cycle holds the scope, and a strong one back would leave every
    # request's cycle and scope to the garbage collector, whose passes cost milliseconds.
    cycle.scope[SCOPE_KEY] = weakref.ref(cycle)  # type: ignore[literal-required]


def stream_writer(scope: Any) -> StreamWriter | None:
    """The request's `StreamWriter`, or None when its server offers none."""
    reference = scope.get(SCOPE_KEY)
    cycle = None if reference is None else reference()
    return None if cycle is None else StreamWriter(cycle)
