"""uvicorn's httptools protocol with bounds on what a client connection may hold.

uvicorn bounds neither the number nor the size of request headers, and its only timer is the
keep-alive one, armed after a response: a client may send 10,000 headers, a 16 MB header
value, or its headers a byte a second, and a connection that never sends a byte stays open.
`BoundedHttpToolsProtocol` adds, per `ClientLimits`:

- a header count and a head size (request line plus headers) limit, answered 431 with an
  OpenAI-style JSON error and ``Connection: close``. httptools accumulates a header's name
  and value before it calls back, so the size is counted on the bytes read while the head
  is incomplete, and both the size and the count are checked after each read and when the
  head is complete: what is buffered never exceeds the limits by more than one read;
- a header timeout: the head must be complete within ``header_timeout`` of the connect or of
  its first byte, else the connection is closed (there is no one to answer: the client is
  not reading, or is an attack);
- the keep-alive timeout of ``keep_alive_timeout``: uvicorn's handler, but one timer per
  connection that moves on lazily rather than a timer made and cancelled on every answer
  (the event loop's timers cost about 1.5% of the router's CPU per request);
- a cap on open connections: one over ``max_connections`` is closed when it is accepted,
  and a warning says how many were (one line per ten seconds at most).

A refused request's answer is followed by a lingering close: the router ends its side and
reads and drops what the client still sends for `LINGER_SECONDS`, so that a client still
writing its oversized head reads the 431 instead of a connection reset.

Malformed requests (request smuggling shapes among them: Content-Length with
Transfer-Encoding, conflicting Content-Lengths, obs-fold, bad chunk sizes) are refused by
llhttp in its strict mode; the 400 they get is JSON here too. The hot path pays one length
check per read and one when the head is complete.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, ClassVar

import httptools
from uvicorn._types import ASGI3Application
from uvicorn.config import Config
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)
from uvicorn.server import ServerState

from llmservice.router import client_connection
from llmservice.router.config import ClientLimits

__all__ = ["BoundedHttpToolsProtocol", "bounded_protocol"]


REFUSAL_LOG_INTERVAL = 10.0
# How long a refused connection's further bytes are read and dropped before it is closed.
LINGER_SECONDS = 2.0


class _HeadTooLarge(Exception):
    """Raised from a parser callback to stop parsing a head over the limits."""


def _error(status: int, message: str, error_type: str, code: str) -> tuple[bytes, bytes]:
    """The status line and headers (without the blank line), and the JSON body."""
    body = json.dumps(
        {"error": {"message": message, "type": error_type, "param": None, "code": code}}
    ).encode()
    return b"".join(
        [
            STATUS_LINE[status],
            b"content-type: application/json\r\n",
            b"content-length: " + str(len(body)).encode() + b"\r\n",
            b"connection: close\r\n",
        ]
    ), body


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """One client connection, within `limits` (see the module docstring)."""

    limits: ClassVar[ClientLimits] = ClientLimits()
    # Connections refused since the last log line, and when that line was written.
    refusals: ClassVar[list[float]] = [0, -REFUSAL_LOG_INTERVAL]

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        # uvicorn types its keep-alive timeout as whole seconds; call_later takes a float.
        self.timeout_keep_alive = self.limits.keep_alive_timeout  # type: ignore[assignment]
        self._head_bytes = 0  # bytes read while the current head is incomplete
        self._in_head = True
        self._head_timer: asyncio.TimerHandle | None = None
        self._lingering = False
        # Since when the connection has been idle after an answer (None: it is not idle),
        # and the timer that closes it once it has been for the keep-alive timeout.
        self._idle_since: float | None = None
        self._keep_alive_timer: asyncio.TimerHandle | None = None

    # -- connection ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        over_cap = len(self.connections) >= self.limits.max_connections
        super().connection_made(transport)
        if over_cap:
            transport.close()
            self._log_refusal()
            return
        self._arm_head_timer()

    def _log_refusal(self) -> None:
        # One line per REFUSAL_LOG_INTERVAL at most: a flood must not flood the log too.
        refusals = self.refusals
        refusals[0] += 1
        now = self.loop.time()
        if now - refusals[1] >= REFUSAL_LOG_INTERVAL:
            self.logger.warning(
                "Refused %d client connection(s) over the cap of %d open connections",
                refusals[0],
                self.limits.max_connections,
            )
            refusals[:] = [0, now]

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        if self._keep_alive_timer is not None:  # it holds the protocol: let both go now
            self._keep_alive_timer.cancel()
            self._keep_alive_timer = None
        cycle = self.cycle
        super().connection_lost(exc)
        if self.flow is not None:
            client_connection.gone(self.flow)
        if cycle is not None and cycle.disconnected:
            client_connection.disconnected(cycle)

    def pause_writing(self) -> None:
        super().pause_writing()
        client_connection.writing(self.flow, False)

    def resume_writing(self) -> None:
        super().resume_writing()
        client_connection.writing(self.flow, True)

    def data_received(self, data: bytes) -> None:
        # uvicorn's, with the head limits; its 400 and upgrade handling are kept.
        if self._lingering:
            return  # after a refusal: what the client still sends is read and dropped
        self._unset_keepalive_if_required()
        if self._in_head:
            self._head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError as error:
            if isinstance(error.__context__, _HeadTooLarge):
                self._refuse_head()
            else:
                self.logger.debug("Invalid HTTP request received: %s", error)
                self.send_400_response("Invalid HTTP request received.")
            return
        if self._in_head and self._head_bytes:
            limits = self.limits
            if (
                self._head_bytes > limits.max_header_bytes
                or len(self.headers) > limits.max_header_count
            ):
                self._refuse_head()
            elif self._head_timer is None:
                # A head that came in one read never needs the timer: it is armed only
                # for one that is still incomplete when the read is parsed.
                self._arm_head_timer()

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        # Not limits: the app may take the body, write the answer and hear of a hang-up
        # past ASGI (`client_connection`).
        client_connection.offer(cycle)
        super()._start_asgi_task(cycle, app)

    # -- parser callbacks ---------------------------------------------------------------

    # The header count is checked once per read and when the head is complete, not in
    # on_header: a Python override there costs a call per header of every request, and a
    # head over the count is still refused before more than one read of it is parsed.

    def on_headers_complete(self) -> None:
        # The bytes read may include body bytes: only then is the head measured exactly.
        limits = self.limits
        if len(self.headers) > limits.max_header_count:
            raise _HeadTooLarge
        limit = limits.max_header_bytes
        if self._head_bytes > limit and self._head_size() > limit:
            raise _HeadTooLarge
        self._in_head = False
        self._cancel_head_timer()
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        # uvicorn adds every part of a body to a bytearray and copies it out into bytes for
        # each receive(): two copies of every body (about 6% of a request's instructions
        # with a 14 KB prompt). A part that comes while nothing is held is held as the
        # parser's own bytes instead, which receive()'s bytes() passes on uncopied; a
        # second part before the app receives goes to a bytearray as uvicorn's would, so
        # parts that pile up are not copied again on each one.
        cycle = self.cycle
        held = cycle.body
        if held or cycle.response_complete or self.parser.should_upgrade():
            if held and isinstance(held, bytes):  # not a bytearray: ours, held alone
                cycle.body = bytearray(held)
            super().on_body(body)
            return
        cycle.body = body  # type: ignore[assignment]
        if len(body) > HIGH_WATER_LIMIT:
            self.flow.pause_reading()
        cycle.message_event.set()

    def on_message_complete(self) -> None:
        self._in_head = True
        self._head_bytes = 0
        super().on_message_complete()

    # -- keep-alive timer ---------------------------------------------------------------

    def on_response_complete(self) -> None:
        # uvicorn's, but for arming the keep-alive timer (see `_keep_alive_check`).
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:  # a pipelined request starts now
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
            return
        self._idle_since = now = self.loop.time()
        if self._keep_alive_timer is None:
            self._keep_alive_timer = self.loop.call_at(
                now + self.timeout_keep_alive, self._keep_alive_check
            )

    def _unset_keepalive_if_required(self) -> None:
        # uvicorn calls this when data comes in: the connection is no longer idle. The
        # timer stays armed and finds that out when it fires.
        self._idle_since = None

    def _keep_alive_check(self) -> None:
        """Close the connection if it has been idle for the keep-alive timeout; if it has
        been busy since, wait for the rest of the timeout from when it was last idle."""
        self._keep_alive_timer = None
        idle_since = self._idle_since
        if idle_since is None:
            return  # busy: armed again when its answer is complete
        due = idle_since + self.timeout_keep_alive
        if self.loop.time() >= due:
            self.timeout_keep_alive_handler()
        else:
            self._keep_alive_timer = self.loop.call_at(due, self._keep_alive_check)

    # -- answers ------------------------------------------------------------------------

    def send_400_response(self, msg: str) -> None:
        self._answer_and_close(400, msg, "invalid_request_error", "bad_request")

    def _refuse_head(self) -> None:
        limits = self.limits
        message = (
            f"The request head exceeds {limits.max_header_count} headers"
            f" or {limits.max_header_bytes} bytes."
        )
        self._answer_and_close(
            431, message, "invalid_request_error", "request_header_fields_too_large"
        )

    def _answer_and_close(self, status: int, message: str, error_type: str, code: str) -> None:
        if self.transport.is_closing():
            return
        cycle = self.cycle
        # A response already under way cannot be interrupted by another one; one not yet
        # started (a body that turned out malformed while the app read it) is replaced.
        if cycle is None or cycle.response_complete or not cycle.response_started:
            if cycle is not None and not cycle.response_complete:
                cycle.disconnected = True  # the app's request ends; its sends are dropped
                cycle.message_event.set()
            head, body = _error(status, message, error_type, code)
            default = b"".join(
                name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers
            )
            self.transport.write(head + default + b"\r\n" + body)
            if self.transport.can_write_eof():
                # Lingering close: closing while the client is still sending would reset the
                # connection and lose the answer, so end our side and drop what comes for a
                # moment (as NGINX's lingering_close does) before closing.
                self.transport.write_eof()
                self._lingering = True
                self._cancel_head_timer()
                self.loop.call_later(LINGER_SECONDS, self.transport.close)
                return
        self.transport.close()

    # -- header timer -------------------------------------------------------------------

    def _arm_head_timer(self) -> None:
        # uvloop (libuv) and asyncio both handle reads before timers that fell due in the
        # same loop iteration: a head that arrived while the loop was busy is read first.
        self._head_timer = self.loop.call_later(self.limits.header_timeout, self._head_timeout)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self._in_head and not self.transport.is_closing():
            self.transport.close()

    def _head_size(self) -> int:
        # Request line and header lines, as sent (give or take the version's bytes).
        return len(self.url) + 16 + sum(len(name) + len(value) + 4 for name, value in self.headers)


def bounded_protocol(limits: ClientLimits) -> type[BoundedHttpToolsProtocol]:
    """The protocol class for uvicorn's ``http=``, enforcing `limits`."""
    namespace = {"limits": limits, "refusals": [0, -REFUSAL_LOG_INTERVAL]}
    return type("BoundedHttpToolsProtocol", (BoundedHttpToolsProtocol,), namespace)
