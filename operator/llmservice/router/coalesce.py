"""A response's head written together with its first body part: one system call, not two.

uvicorn writes a response's status line and headers when the app sends
``http.response.start``, and each body part when it comes: two writes, two TCP segments,
for an answer that is ready at once (a non-streamed completion, an error, /healthz). On
loopback each write costs about as much as a tenth of the router's whole work for a
request. `HeldHead` stands in for the connection's transport in one request's cycle: it
holds the head of an answer with a ``Content-Length`` (its body follows, or it has none)
and writes it with the first body part, in one ``writev``.

Written at once, as before: chunked answers (streams: the client sees the status before
the first token), HEAD answers (uvicorn writes no body for them), and anything written
before the head (``100 Continue``). A held head also goes out when the connection is
closed (an answer cut off after its head, as before). After the first write that is not
held the cycle gets the real transport back.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

__all__ = ["HeldHead", "hold_heads"]


class HeldHead:
    """One cycle's transport until its head is out (see the module docstring)."""

    __slots__ = ("_cycle", "_head", "_transport")

    def __init__(self, cycle: RequestResponseCycle, transport: asyncio.Transport) -> None:
        self._cycle = cycle
        self._transport = transport
        self._head: bytes | None = None

    def write(self, data: bytes) -> None:
        cycle = self._cycle
        head = self._head
        if head is None:
            # uvicorn has just decided the framing when it writes the head: False means a
            # Content-Length, and then a body write follows (an empty one for no body).
            if cycle.chunked_encoding is False and cycle.scope["method"] != "HEAD":
                self._head = data
                return
            cycle.transport = self._transport
            self._transport.write(data)
            return
        cycle.transport = self._transport
        self._head = None
        self._transport.writelines((head, data))

    def close(self) -> None:
        if self._head is not None:
            self._transport.write(self._head)
            self._head = None
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def hold_heads(cycle: RequestResponseCycle) -> None:
    """Make ``cycle`` write its head with its first body part."""
    cycle.transport = HeldHead(cycle, cycle.transport)  # type: ignore[assignment]
