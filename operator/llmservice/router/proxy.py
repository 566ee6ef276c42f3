"""Forwarding one request to a replica and streaming the answer back.

Each attempt holds a slot of its replica (`llmservice.router.admission.dispatcher`): taken
at once when one is free, after a wait in the router's queue otherwise, and released in a
``finally`` whatever ends the attempt. A retry on the same replica (a stale keep-alive
connection) keeps its slot; a retry elsewhere gives it back and takes a free one.

The upstream client is one `llmservice.router.upstream.Pool` of keep-alive connections per
app, chosen by measurement (see that module and bench/README.md). Bodies pass through
untouched and are forwarded as each piece arrives, never buffered; SSE therefore streams
chunk by chunk.

Retry policy: a request is retried on another replica only when the attempt failed before
the first response byte: the connection was refused or the connect timed out (the engine
never saw the request), or the connection broke before any response byte (a keep-alive
connection the engine had closed, or an engine that died before answering).
Retries are capped per request (``RetryPolicy.attempts_max``) and by a budget over all
requests (`RetryBudget`). A first-byte timeout is not retried: the engine may be working
on the request, and a second copy would double the load that made it slow. A response
status, even 5xx, is the engine's answer and is passed on as it is.

Timeouts: ``connect`` bounds the TCP connect, ``first_byte`` the wait for the response
headers, ``idle`` each wait for the next body chunk, ``total`` the whole exchange. A
failure after the headers went out cannot change the status: an SSE stream gets a final
``data: {"error": ...}`` event, any other body is cut off by closing the connection.

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
from llmservice.router.clients import ANONYMOUS, Client
from llmservice.router.config import RouterConfig
from llmservice.router.deadlines import TIMEOUT_MESSAGES, Watchdog
from llmservice.router.discovery import Replica
from llmservice.router.errors import (
    NoReadyReplica,
    RouterError,
    UpstreamConnectError,
    UpstreamProtocolError,
    UpstreamTimeout,
)
from llmservice.router.metrics import RouterMetrics
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
    return Pool(limit=config.max_connections, connect_timeout=config.timeouts.connect)


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
    status: int = 0
    cause: str | None = None
    first_byte_at: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    sse: bool = False
    response_started: bool = False
    response_finished: bool = False
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
            if name in drop:
                if name == b"connection":  # and the headers it names (RFC 9110 7.6.1)
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
                continue
            if name not in drop:
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
        on_slow: Callable[[], None] | None = None,
        slow_after: float = math.inf,
    ) -> None:
        """Send ``body`` to ``path`` on a chosen replica and stream its answer to ``send``."""
        self.budget.record_request()
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - always inside a task under a server
            raise RuntimeError("no current task")
        # The total deadline counts from when the request arrived, on the loop's clock.
        deadline = loop.time() + self.config.timeouts.total - (self.clock() - started)
        timeouts = self.config.timeouts
        first_check = min(timeouts.first_byte, timeouts.idle)
        watchdog = Watchdog(loop, task, deadline, first_check, on_slow, slow_after)
        try:
            await self._attempts(exchange, send, path, body, headers, watchdog)
        except asyncio.CancelledError:
            if watchdog.expired is None:
                raise
            task.uncancel()
            error = UpstreamTimeout(TIMEOUT_MESSAGES[watchdog.expired])
            if not exchange.response_started:
                raise error from None
            await self._abort(exchange, send, error)
        except _AbortStream as abort:
            await self._abort(exchange, send, abort.error)
        finally:
            watchdog.close()

    async def _attempts(
        self,
        exchange: Exchange,
        send: Send,
        path: str,
        body: bytes,
        headers: bytes,
        watchdog: Watchdog,
    ) -> None:
        if self.pool is None:
            raise RuntimeError("the app has not started")
        target = path.encode("latin-1")
        tried: set[str] = set()
        stale: set[str] = set()
        last_error: RouterError | None = None
        held: str | None = None  # the replica whose slot this request holds
        try:
            while True:
                if held is None:
                    choice = await self._slot(exchange, tried, last_error)
                    held = choice.replica
                    if not tried:
                        exchange.primary = choice.primary
                        if exchange.key_kind != "none":
                            self.metrics.routed(exchange.key_kind, choice.primary)
                name = held
                tried.add(name)
                exchange.replica = name
                exchange.attempts += 1
                host, port, base, host_header = self._targets[name]
                watchdog.enter("first_byte", self.config.timeouts.first_byte)
                head = b"POST " + base + target + b" HTTP/1.1\r\n" + host_header + headers
                try:
                    response = await self.pool.request(host, port, head, body)
                except (ConnectError, DisconnectedError) as error:
                    if isinstance(error, DisconnectedError) and not error.before_response:
                        raise UpstreamProtocolError(
                            "The engine closed the connection in the middle of its response."
                        ) from None
                    last_error = UpstreamConnectError(
                        f"Could not reach an engine replica: {type(error).__name__}."
                    )
                    if (
                        exchange.attempts > self.config.retry.attempts_max
                        or not self.budget.try_spend()
                    ):
                        raise last_error from None
                    if isinstance(error, DisconnectedError) and name not in stale:
                        # A pooled keep-alive connection the engine had closed: the same
                        # replica gets one more try on a fresh connection, in the same slot.
                        stale.add(name)
                    else:
                        held = None
                        self._release(name)
                    self.metrics.retry(last_error.cause)
                    continue
                except ProtocolError as error:
                    raise UpstreamProtocolError(
                        f"The engine sent an invalid response: {error}."
                    ) from None
                watchdog.enter("idle", self.config.timeouts.idle)
                try:
                    await self._relay(exchange, send, response, watchdog)
                finally:
                    response.close()
                return
        finally:
            if held is not None:
                self._release(held)

    async def _slot(
        self, exchange: Exchange, tried: set[str], last_error: RouterError | None
    ) -> Choice:
        """A replica slot: at once when one is free, else after waiting in the queue.

        A retry (``tried`` is not empty) never queues: it takes a free slot on a replica it
        has not tried, or fails with the error of its last attempt.
        """
        choice = self.dispatcher.try_acquire(exchange.key, tried)
        if choice is not None:
            if not tried and self.on_wait is not None:
                self.on_wait(exchange.client.name, 0.0)
            return choice
        if last_error is not None:
            raise last_error
        if not self.replicas or tried:
            raise NoReadyReplica("No engine replica is ready to serve this request.")
        queued_at = self.clock()
        try:
            return await self.dispatcher.wait(exchange.key, exchange.client)
        finally:
            exchange.queue_wait = self.clock() - queued_at

    async def _relay(
        self,
        exchange: Exchange,
        send: Send,
        response: Response,
        watchdog: Watchdog,
    ) -> None:
        status = response.status
        exchange.status = status
        if status >= 500:
            exchange.cause = "upstream_5xx"
        out_headers = [
            (name.lower(), value)
            for name, value in response.headers
            if name.lower() not in _DROP_RESPONSE
        ]
        out_headers.append((b"x-request-id", exchange.request_id.encode()))
        out_headers.extend(exchange.extra_headers)
        content_type = response.header(b"content-type") or b""
        sse = content_type.startswith(b"text/event-stream")
        keep_json = not sse and content_type.startswith(b"application/json")
        await send({"type": "http.response.start", "status": status, "headers": out_headers})
        exchange.response_started = True
        exchange.sse = sse
        kept: list[bytes] = []
        kept_size = 0
        previous = tail = b""
        read_chunk = response.read_chunk
        touch = watchdog.touch
        try:
            while True:
                chunk = await read_chunk()
                if not chunk:
                    break
                if exchange.first_byte_at is None:
                    exchange.first_byte_at = self.clock()
                if sse:
                    previous, tail = tail, chunk
                elif keep_json and kept_size < _USAGE_BODY_LIMIT:
                    kept.append(chunk)
                    kept_size += len(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                touch()
        except UpstreamError as error:
            raise _AbortStream(
                UpstreamProtocolError(f"The engine broke off its response: {error}.")
            ) from None
        exchange.response_finished = True
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        if sse:
            exchange.prompt_tokens, exchange.completion_tokens = usage_from_sse_tail(
                previous + tail
            )
        elif kept and kept_size < _USAGE_BODY_LIMIT:
            exchange.prompt_tokens, exchange.completion_tokens = usage_from_json(b"".join(kept))

    async def _abort(self, exchange: Exchange, send: Send, error: RouterError) -> None:
        """End a response whose headers are already out; see the module docstring."""
        exchange.cause = error.cause
        if not exchange.sse:
            return  # the app returns with the body incomplete and the server closes the connection
        event = {
            "error": {
                "message": error.message,
                "type": error.error_type,
                "code": error.code,
                "request_id": exchange.request_id,
            }
        }
        payload = b"data: " + json.dumps(event).encode() + b"\n\n"
        await send({"type": "http.response.body", "body": payload, "more_body": True})
        exchange.response_finished = True
        await send({"type": "http.response.body", "body": b"", "more_body": False})
