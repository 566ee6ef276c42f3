"""Forwarding one request to a replica and streaming the answer back.

Each attempt holds a slot of its replica (`llmservice.router.admission.dispatcher`): taken
at once when one is free, after a wait in the router's queue otherwise, and released in a
``finally`` whatever ends the attempt. A retry takes a free slot on a replica the request
has not tried before it gives back the one it holds.

The upstream client is one `llmservice.router.upstream.Pool` of keep-alive connections per
app, chosen by measurement (see that module and bench/README.md). Bodies pass through
untouched and are forwarded as each piece arrives, never buffered; SSE therefore streams
chunk by chunk.

Retry policy: a request is retried on *another* replica when the attempt failed before any
response byte reached the client: a replica it has not tried, and only when no untried
replica can take it (each failed it, is ejected or is full) one that failed it before,
never the one that just failed:

- the connection was refused or the connect timed out (the engine never saw the request);
- the connection broke before the status line (an engine that died before answering);
- the engine answered 502, 503 or 504 (a gateway or overload answer, no work done): the
  status and headers are read first, and ``http.response.start`` goes to the client only
  once the router has decided to relay this answer; a retried answer's connection is
  reused when its body had fully arrived, else closed.

Never retried: a 500 or any 4xx (the engine's own verdict on the request), anything after
the response started, and a first-byte timeout (the engine may be working on the request,
and a second copy would double the load that made it slow). A retry needs a free slot on
an untried replica (it never queues), stays within ``RetryPolicy.attempts_max`` per request
and is subject to the retry budget (`RetryBudget`, which lets retries onto healthy replicas
through). When no retry is possible the last answer or error goes to the client. One
exception keeps a lone replica usable: a pooled keep-alive connection that broke before
any response byte (the engine closed it as the request went out) is retried once on a
fresh connection to the same replica when no other replica can take the request.

Each attempt's outcome feeds the outlier detector (`llmservice.router.outliers`), which
ejects replicas that keep failing.

Timeouts: ``connect`` bounds the TCP connect (a connect timeout is retried like a refusal,
and answers 504 when it was the last attempt), ``first_byte`` the wait for the response
headers (504), ``idle`` each wait for the next body chunk, ``total`` the whole exchange. A
failure after the headers went out cannot change the status: an SSE stream gets a final
``data: {"error": ...}`` event, any other body is cut off by closing the connection (as is
a stream broken off inside one of the engine's chunk frames that went on as they came:
the client's HTTP client then reports an incomplete chunked body).

Headers: hop-by-hop headers (RFC 9110 section 7.6.1) are dropped both ways, the client's
``Authorization`` is dropped unless ``forward_authorization`` is set, and the request id
travels upstream in ``X-Request-ID``. With tracing on, the client's ``traceparent`` and
``tracestate`` are replaced by ones naming the router's span (`llmservice.router.tracing`);
with it off they pass through like any other header. The engine gets the client's address
in ``X-Forwarded-For`` and its scheme in ``X-Forwarded-Proto`` (a client's own are passed on
only from a trusted proxy); the engine's ``Date``, ``Server`` and CORS headers are not passed
back: the server adds the one ``Date``, and CORS is the router's policy.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import math
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from llmservice.router.admission.dispatcher import Dispatcher
from llmservice.router.balancer import Balancer, Choice
from llmservice.router.client_connection import ClientConnection, PartsSent
from llmservice.router.clients import ANONYMOUS, Client
from llmservice.router.config import RouterConfig
from llmservice.router.deadlines import TIMEOUT_MESSAGES, Deadlines, Watchdog, tick_for
from llmservice.router.discovery import Replica
from llmservice.router.errors import (
    NoReadyReplica,
    RouterError,
    UpstreamConnectError,
    UpstreamProtocolError,
    UpstreamTimeout,
)
from llmservice.router.metrics import RouterMetrics
from llmservice.router.outliers import OutlierDetector
from llmservice.router.payloads import usage_from_json, usage_from_sse_tail
from llmservice.router.retry_budget import RetryBudget
from llmservice.router.upstream import (
    ConnectError,
    DisconnectedError,
    Pool,
    ProtocolError,
    Response,
    UpstreamError,
)

if TYPE_CHECKING:
    from opentelemetry.trace import Span

__all__ = ["HOP_BY_HOP", "Exchange", "Proxy", "make_pool"]

Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
# The proxy headers a client may send; passed on only from a trusted proxy.
_FORWARDED = frozenset(
    {b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-port",
     b"forwarded"}
)  # fmt: skip
# Request headers the router sets itself or never forwards.
_DROP_REQUEST = HOP_BY_HOP | _FORWARDED | {
    b"host", b"content-length", b"content-type", b"expect", b"x-request-id",
}  # fmt: skip
_DROP_REQUEST_AUTH = _DROP_REQUEST | {b"authorization"}
# With tracing on, the router's own span becomes the engine's parent: the client's trace
# context is dropped and the router's sent instead (a set per case, built once).
_TRACE_CONTEXT = frozenset({b"traceparent", b"tracestate"})
_DROP_REQUEST_TRACED = _DROP_REQUEST | _TRACE_CONTEXT
_DROP_REQUEST_AUTH_TRACED = _DROP_REQUEST_AUTH | _TRACE_CONTEXT
_USAGE_BODY_LIMIT = 1 << 20
# Answers that say the replica could not take the request, not what the engine thinks of it.
RETRY_STATUSES = frozenset({502, 503, 504})
# Response headers that are the router's own: one Date (the server's), no engine Server
# banner, the router's request id and CORS policy (`llmservice.router.cors`).
_DROP_RESPONSE = HOP_BY_HOP | {
    b"x-request-id", b"date", b"server",
    b"access-control-allow-origin", b"access-control-allow-credentials",
    b"access-control-expose-headers", b"access-control-allow-methods",
    b"access-control-allow-headers", b"access-control-max-age", b"vary",
}  # fmt: skip


def make_pool(config: RouterConfig) -> Pool:
    """The one pooled upstream client of an app."""
    return Pool(
        limit=config.max_connections,
        connect_timeout=config.timeouts.connect,
        keepalive=config.upstream_keepalive,
    )


def _target(url: str) -> tuple[str, int, bytes, bytes]:
    """(host, port, base path, Host header line) of an engine's base URL."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or 80
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return host, port, parts.path.rstrip("/").encode(), f"host: {netloc}\r\n".encode()


@dataclass(slots=True)
class Exchange:
    """What happened to one proxied request, for metrics, the access log and its span."""

    request_id: str
    route: str
    model: str
    client: Client = ANONYMOUS
    key: str | None = None
    key_kind: str = "none"
    session: str | None = None
    stream: bool = False
    replica: str | None = None
    attempts: int = 0
    primary: bool = True
    queue_wait: float = 0.0
    body_bytes: int = 0  # of the request body, charged to the router's budget while held
    status: int = 0
    cause: str | None = None
    first_byte_at: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    sse: bool = False
    response_started: bool = False
    response_finished: bool = False
    # The engine's frames went on as they came and the body broke off inside one: nothing
    # of the router's own can follow (`Response.at_frame_end`).
    cut_mid_frame: bool = False
    extra_headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    span: Span | None = None


class _AbortStream(Exception):
    """Stop the response after its headers went out; carries the cause."""

    def __init__(self, error: RouterError) -> None:
        super().__init__(error.message)
        self.error = error


class Proxy:
    """Chooses a replica, forwards, retries before the first byte, streams back."""

    def __init__(
        self,
        config: RouterConfig,
        balancer: Balancer,
        metrics: RouterMetrics,
        budget: RetryBudget,
        clock: Callable[[], float] = time.monotonic,
        on_wait: Callable[[str, float], None] | None = None,
    ) -> None:
        self.config = config
        self.balancer = balancer
        self.metrics = metrics
        self.budget = budget
        self.clock = clock
        self.on_wait = on_wait
        self.pool: Pool | None = None
        # The requests' watchdogs, on the loop of the requests (made by the first one).
        self._deadlines: Deadlines | None = None
        timeouts = config.timeouts
        self._tick = tick_for(timeouts.first_byte, timeouts.idle, timeouts.total)
        self.replicas: dict[str, Replica] = {}
        self.loads: dict[str, int] = {}
        admission = config.admission
        self.dispatcher = Dispatcher(
            balancer,
            self.loads,
            self._release,
            cap=admission.max_in_flight_per_replica,
            max_queued=admission.max_queued,
            queue_timeout=admission.queue_timeout,
            clock=clock,
            on_wait=on_wait,
        )
        self.outliers = OutlierDetector(
            config.outliers, self.dispatcher.set_ejected, self.probe, metrics.registry, clock
        )
        self._trusted = tuple(ipaddress.ip_network(c, strict=False) for c in config.trusted_proxies)
        self._gone: set[str] = set()
        self._targets: dict[str, tuple[str, int, bytes, bytes]] = {}

    # -- replica set --------------------------------------------------------------------

    def set_replicas(self, routable: dict[str, Replica]) -> None:
        """Route to exactly ``routable``; replicas that left keep their in-flight count."""
        for name in self.replicas.keys() - routable.keys():
            if self.loads.get(name, 0):
                self._gone.add(name)
            else:
                self._forget(name)
        self._gone -= routable.keys()
        self.replicas = dict(routable)
        self._targets = {name: _target(replica.url) for name, replica in routable.items()}
        for name in routable:
            self.loads.setdefault(name, 0)
        self.balancer.update(routable.keys())
        self.metrics.set_replicas(len(routable), len(self._gone))
        self.outliers.update(routable.keys())
        self.dispatcher.update(routable.keys())

    def _forget(self, name: str) -> None:
        self.loads.pop(name, None)

    def _release(self, name: str) -> None:
        value = self.loads[name] - 1
        self.loads[name] = value
        if value == 0 and name in self._gone:
            self._gone.discard(name)
            self._forget(name)
            self.metrics.set_replicas(len(self.replicas), len(self._gone))
        self.dispatcher.freed(name)

    # -- one request --------------------------------------------------------------------

    def upstream_headers(
        self,
        headers: Iterable[tuple[bytes, bytes]],
        request_id: str,
        trace_lines: list[bytes] | None = None,
        client: tuple[str, int] | None = None,
        scheme: str = "http",
    ) -> bytes:
        """The request's header lines for the engine, ``\\r\\n``-joined (no Host, no length).

        ``trace_lines`` (tracing on) replace the client's ``traceparent`` and ``tracestate``;
        without them the client's pass through like any other header. The ``client``
        address is appended to ``X-Forwarded-For`` and ``X-Forwarded-Proto`` is ``scheme``;
        the client's own ``X-Forwarded-*`` and ``Forwarded`` are dropped, unless it is a
        trusted proxy (``config.trusted_proxies``): then they pass on, its address appended.
        """
        forward_authorization = self.config.forward_authorization
        if trace_lines is None:
            drop = _DROP_REQUEST if forward_authorization else _DROP_REQUEST_AUTH
        else:
            drop = _DROP_REQUEST_TRACED if forward_authorization else _DROP_REQUEST_AUTH_TRACED
        trusted = bool(self._trusted) and client is not None and self._trusted_proxy(client[0])
        chain: list[bytes] = []
        proto = scheme.encode()
        lines: list[bytes] = []
        for name, value in headers:
            if name not in drop:  # the common case first: one set lookup per header
                lines.append(name + b": " + value)
            elif name == b"connection":  # and the headers it names (RFC 9110 7.6.1)
                named = {t.strip().lower() for t in value.split(b",")}
                drop = drop | (named - {b"close", b"keep-alive"})
                lines = [line for line in lines if line.split(b":", 1)[0] not in drop]
            elif trusted and name in _FORWARDED:
                if name == b"x-forwarded-for":
                    chain.append(value)
                elif name == b"x-forwarded-proto":
                    proto = value
                else:
                    lines.append(name + b": " + value)
        if client is not None:
            chain.append(client[0].encode())
        if chain:
            lines.append(b"x-forwarded-for: " + b", ".join(chain))
        lines.append(b"x-forwarded-proto: " + proto)
        lines.append(b"content-type: application/json")
        lines.append(b"x-request-id: " + request_id.encode())
        if trace_lines is not None:
            lines.extend(trace_lines)
        return b"\r\n".join(lines)

    def _trusted_proxy(self, address: str) -> bool:
        try:
            peer = ipaddress.ip_address(address)
        except ValueError:  # not an IP address (a Unix socket's path)
            return False
        return any(peer in network for network in self._trusted)

    async def forward(
        self,
        exchange: Exchange,
        send: Send,
        path: str,
        body: bytes,
        headers: bytes,
        started: float,
        task: asyncio.Task[Any],
        on_slow: Callable[[], None] | None = None,
        slow_after: float = math.inf,
        connection: ClientConnection | None = None,
    ) -> None:
        """Send ``body`` to ``path`` on a chosen replica and stream its answer to ``send``.

        ``task`` is the request's own (the caller's): a timeout cancels it. With the client's
        ``connection`` the answer goes to it past ASGI where it can (`ClientConnection`), and
        an SSE answer's parts straight from the engine's connection (`PartWriter`).
        """
        self.budget.record_request()
        loop = task.get_loop()
        # The total deadline counts from when the request arrived, on the loop's clock.
        deadline = loop.time() + self.config.timeouts.total - (self.clock() - started)
        timeouts = self.config.timeouts
        deadlines = self._deadlines
        if deadlines is None or deadlines.loop is not loop:
            deadlines = self._deadlines = Deadlines(loop, self._tick)
        watchdog = Watchdog(deadlines, task, deadline, on_slow, slow_after)
        try:
            response, held = await self._attempts(exchange, path, body, headers, watchdog)
            # The answer is relayed here rather than inside `_attempts`: a streamed one
            # resumes this chain of coroutines on every chunk, the shorter the cheaper.
            try:
                # Idle while the engine sends nothing: the watchdog follows its reads.
                watchdog.enter("idle", timeouts.idle, response.reads)
                await self._relay(exchange, send, response, connection)
            finally:
                response.close()
                self._release(held)
        except asyncio.CancelledError:
            if watchdog.expired is None:
                raise
            task.uncancel()
            error = UpstreamTimeout(TIMEOUT_MESSAGES[watchdog.expired])
            if not exchange.response_started:
                raise error from None
            await self._abort(exchange, send, connection, error)
        except _AbortStream as abort:
            await self._abort(exchange, send, connection, abort.error)
        finally:
            watchdog.close()

    async def _attempts(
        self,
        exchange: Exchange,
        path: str,
        body: bytes,
        headers: bytes,
        watchdog: Watchdog,
    ) -> tuple[Response, str]:
        """The answer to relay and the replica whose slot it holds (the caller releases it).

        Attempts, and retries on other replicas, until an answer is to be relayed; raises
        (having released the slot) when none is.
        """
        if self.pool is None:
            raise RuntimeError("the app has not started")
        outliers = self.outliers
        target = path.encode("latin-1")
        tried: set[str] = set()
        fresh = False  # the next attempt opens a new connection (see the module docstring)
        # A free slot is taken without a coroutine of its own; only a wait needs one.
        choice = self.dispatcher.try_acquire(exchange.key, ())
        if choice is None:
            choice = await self._queued_slot(exchange)
        elif self.on_wait is not None:
            self.on_wait(exchange.client.name, 0.0)
        held = choice.replica  # the replica whose slot this request holds
        exchange.primary = choice.primary
        if exchange.key_kind != "none":
            self.metrics.routed(exchange.key_kind, choice.primary)
        try:
            while True:
                name = held
                tried.add(name)
                exchange.replica = name
                exchange.attempts += 1
                host, port, base, host_header = self._targets[name]
                watchdog.enter("first_byte", self.config.timeouts.first_byte)
                head = b"POST " + base + target + b" HTTP/1.1\r\n" + host_header + headers
                stale = False
                last_error: RouterError
                try:
                    response = await self.pool.request(host, port, head, body, fresh=fresh)
                except ConnectError as error:
                    outliers.failure(name, "connect")
                    self.metrics.attempt("connect_timeout" if error.timed_out else "connect")
                    if error.timed_out:
                        last_error = UpstreamTimeout(
                            "No engine replica accepted the connection within the connect timeout."
                        )
                    else:
                        last_error = UpstreamConnectError(
                            "Could not reach an engine replica: the connection failed."
                        )
                    reason = last_error.cause
                except DisconnectedError as error:
                    if not error.before_response:
                        raise UpstreamProtocolError(
                            "The engine closed the connection in the middle of its response."
                        ) from None
                    stale = error.reused
                    self.metrics.attempt("stale" if stale else "reset")
                    if not stale:  # a pooled connection's close says nothing of the engine
                        outliers.failure(name, "reset")
                    last_error = UpstreamConnectError(
                        "Could not reach an engine replica: the connection was closed before"
                        " any response."
                    )
                    reason = "upstream_reset"
                except ProtocolError as error:
                    raise UpstreamProtocolError(
                        f"The engine sent an invalid response: {error}."
                    ) from None
                else:
                    status = response.status
                    if status >= 500:
                        outliers.failure(name, "5xx")
                        self.metrics.attempt("5xx")
                    else:
                        outliers.success(name)
                        self.metrics.attempt("answered")
                    if status in RETRY_STATUSES:
                        moved = self._retry_slot(exchange, tried, name)
                        if moved is not None:
                            response.close()
                            held = moved
                            fresh = False
                            self.metrics.retry(f"upstream_{status}")
                            continue
                    return response, held
                moved = self._retry_slot(exchange, tried, name)
                if moved is not None:
                    held = moved
                    fresh = False
                elif stale and not fresh and exchange.attempts <= self.config.retry.attempts_max:
                    fresh = True  # the lone replica again, on a new connection, same slot
                else:
                    raise last_error from None
                self.metrics.retry(reason)
        except BaseException:
            self._release(held)
            raise

    def _retry_slot(self, exchange: Exchange, tried: set[str], held: str) -> str | None:
        """Move the request to an untried replica's free slot, or None when it cannot retry.

        An untried replica first; when none can take it, any but ``held``. On success the
        slot held on ``held`` is given back.
        """
        if exchange.attempts > self.config.retry.attempts_max:
            self.metrics.retry_refused("attempts")
            return None
        choice = self.dispatcher.try_acquire(exchange.key, tried)
        if choice is None and len(self.replicas) > 1:
            # No untried replica can take it (each failed this request, is ejected or is
            # full): another round, never on the replica that just failed. Such a replica
            # failed this request, so unless others' requests succeed there the budget pays.
            choice = self.dispatcher.try_acquire(exchange.key, (held,))
        if choice is None:
            self.metrics.retry_refused("no_replica")
            return None
        name = choice.replica
        if not self.budget.allow(healthy_target=self.outliers.healthy(name)):
            self._release(name)
            self.metrics.retry_refused("budget")
            return None
        self._release(held)
        return name

    async def probe(self, name: str) -> bool:
        """Whether ``GET /health`` on ``name`` answers 2xx (the outlier detector's probe)."""
        pool, found = self.pool, self._targets.get(name)
        if pool is None or found is None:
            return False
        host, port, base, host_header = found
        head = b"GET " + base + b"/health HTTP/1.1\r\n" + host_header.rstrip(b"\r\n")
        try:
            async with asyncio.timeout(self.config.outliers.probe_timeout):
                response = await pool.request(host, port, head, b"", fresh=True)
                try:
                    while await response.read_chunk():
                        pass
                finally:
                    response.close()
        except (UpstreamError, TimeoutError):
            return False
        return 200 <= response.status < 300

    async def _queued_slot(self, exchange: Exchange) -> Choice:
        """The first attempt's slot when none was free: after waiting in the queue.

        (Retries never queue: `_retry_slot` takes a free slot or gives up.)
        """
        cold_start = 0.0
        if not self.replicas:
            # None yet (an engine scaling from zero): hold the request for one, if allowed.
            cold_start = self.config.admission.cold_start_timeout
            if cold_start <= 0:
                raise NoReadyReplica("No engine replica is ready to serve this request.")
        queued_at = self.clock()
        try:
            return await self.dispatcher.wait(exchange.key, exchange.client, cold_start)
        finally:
            exchange.queue_wait = self.clock() - queued_at

    async def _relay(
        self,
        exchange: Exchange,
        send: Send,
        response: Response,
        connection: ClientConnection | None,
    ) -> None:
        status = response.status
        exchange.status = status
        if status >= 500:
            exchange.cause = "upstream_5xx"
        out_headers = [
            (name, value) for name, value in response.headers if name not in _DROP_RESPONSE
        ]
        out_headers.append((b"x-request-id", exchange.request_id.encode()))
        out_headers.extend(exchange.extra_headers)
        content_type = response.header(b"content-type") or b""
        sse = content_type.startswith(b"text/event-stream")
        keep_json = not sse and content_type.startswith(b"application/json")
        # Past ASGI when the client's connection takes it (`ClientConnection.start`): the
        # head is then held for the first part, but for a stream's, which the client sees at
        # once (before the first token).
        direct = connection
        if direct is not None and direct.start(status, out_headers, chunked=sse):
            if sse:
                direct.write(b"", True)
        else:
            direct = None
            await send({"type": "http.response.start", "status": status, "headers": out_headers})
        exchange.response_started = True
        exchange.sse = sse
        kept: list[bytes] = []
        kept_size = 0
        # An SSE answer's parts: written by the engine connection's callback as they arrive
        # (`PartWriter`), or sent by this task; either way noted, for the usage at the end.
        parts: PartsSent
        # Past ASGI the engine's own chunk frames go on as they came where they can.
        frames = False
        if sse and connection is not None and connection.streaming:
            parts = splice = connection.part_writer(self.clock)
            frames = response.splice(splice, frames=direct is not None)
        else:
            parts, splice = PartsSent(self.clock), None
        read_chunk = response.read_chunk
        try:
            # With a splice this loop wakes only for what the client did not take at once,
            # the end of the body and errors; the rest went out from the engine's callback.
            while True:
                chunk = await read_chunk()
                if not chunk:
                    break
                if sse:
                    parts.sent(chunk)
                elif exchange.first_byte_at is None:
                    exchange.first_byte_at = self.clock()
                if keep_json and kept_size < _USAGE_BODY_LIMIT:
                    kept.append(chunk)
                    kept_size += len(chunk)
                # The last part of a body that has all arrived ends the response itself:
                # one message, and one call into the server, fewer than an empty last one.
                ended = response.ended
                exchange.response_finished = ended
                if direct is None:
                    message = {"type": "http.response.body", "body": chunk, "more_body": not ended}
                    await send(message)
                else:
                    if direct.paused:  # the client takes no more now: wait, as send would
                        await direct.drain()
                    if frames:
                        direct.write_frames(chunk, not ended)
                    else:
                        direct.write(chunk, not ended)
                if ended:
                    break
        except UpstreamError as error:
            raise _AbortStream(
                UpstreamProtocolError(f"The engine broke off its response: {error}.")
            ) from None
        finally:
            if splice is not None:
                response.splice(None)
            if sse:
                exchange.first_byte_at = parts.first_at
            if frames and not exchange.response_finished:
                exchange.cut_mid_frame = not response.at_frame_end()
        if not exchange.response_finished:
            exchange.response_finished = True
            if direct is None:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            elif frames:  # the engine's last chunk went on with its frames
                direct.write_frames(b"", False)
            else:
                direct.write(b"", False)
        if sse:
            tail = response.body_tail() if frames else parts.previous + parts.last
            exchange.prompt_tokens, exchange.completion_tokens = usage_from_sse_tail(tail)
        elif kept and kept_size < _USAGE_BODY_LIMIT:
            exchange.prompt_tokens, exchange.completion_tokens = usage_from_json(b"".join(kept))

    async def _abort(
        self,
        exchange: Exchange,
        send: Send,
        connection: ClientConnection | None,
        error: RouterError,
    ) -> None:
        """End a response whose headers are already out; see the module docstring."""
        exchange.cause = error.cause
        if not exchange.sse or exchange.cut_mid_frame:
            # The app returns with the body incomplete and the server closes the
            # connection; a head held for the first part goes out first, as sent.
            if connection is not None:
                connection.flush()
            return
        event = {
            "error": {
                "message": error.message,
                "type": error.error_type,
                "code": error.code,
                "request_id": exchange.request_id,
            }
        }
        payload = b"data: " + json.dumps(event).encode() + b"\n\n"
        # Through send whichever way the head went: the cycle's state is the same.
        await send({"type": "http.response.body", "body": payload, "more_body": True})
        exchange.response_finished = True
        await send({"type": "http.response.body", "body": b"", "more_body": False})
