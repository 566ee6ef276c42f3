"""The router's ASGI application and its factory.

`create_app` wires the collaborators (discovery, balancer, metrics registry, access log,
clock); nothing is global, so several apps can live in one process. The app is plain ASGI:
a dictionary from path to handler, no framework routing and no middleware stack on the hot
path.

Routes:

====================================  ====  ================================================
``/v1/chat/completions`` and every    POST  proxied: the inference routes vLLM serves, in
other route in `routes.ROUTES`              `llmservice.router.routes` (completions,
                                            embeddings, responses, Anthropic messages,
                                            tokenize, pooling, score, rerank...); the body
                                            passes through as it came, but for a model
                                            alias (or, with ``accept_any_model_name``, any
                                            name), which is rewritten to the served name
``/api/chat``                         POST  simple chat: ``messages`` plus any chat
                                            completion parameter (null ones dropped), sent
                                            as /v1/chat/completions; the session id is
                                            returned in the session header (made up when
                                            the client sent none) so the client can stick
``/v1/models``                        GET   the served name and the aliases
``/v1/models/{id}``                   GET   one of them (404 ``model_not_found`` otherwise)
``/healthz``, ``/health``             GET   alive, and each replica's breaker state
``/readyz``                           GET   discovery synced, a replica routable, not draining
``/metrics``                          GET   Prometheus text format
====================================  ====  ================================================

With ``config.cors`` on (`llmservice.router.cors`), preflights are answered 204 before
authentication and every response carries the CORS headers of its origin.

With API keys, the proxied routes and ``/v1/models`` (and ``/v1/models/{id}``) need
``Authorization: Bearer <key>`` (401 with ``WWW-Authenticate: Bearer`` otherwise). The keys
are read from ``api_keys`` on every request; with a keys file the app watches it
(`keys_reload`) and replaces them there.

Admission (`llmservice.router.admission`): after authentication a proxied request passes the
rate limits of its key and the router (429 at once otherwise), then takes a replica slot or
waits in the fair queue for one (see `Proxy`). Every 429 carries ``Retry-After`` and the
``x-ratelimit-*`` headers of the limits that apply (only 429s: building them on every
response would cost more than the rest of admission).
With ``engine_priority`` the request's vLLM ``priority`` is set from its key's priority:
vLLM serves lower values first, so priority ``p`` is sent as ``-p``, and whatever the client
sent is replaced, so no client raises its own.

With ``config.tracing`` on, each proxied request gets a span (`llmservice.router.tracing`),
started when the request arrives and ended with the access log line; off, the app holds no
tracer and the request path makes no span and no trace header.

A client that disconnects is noticed at once: while a proxied request is in flight the
router's server reports a hang-up (`llmservice.router.client_connection`; under another
server the app listens for ``http.disconnect`` from ``WATCH_AFTER`` seconds in, so that short
requests do not pay for the listening task), and the app cancels the upstream request,
which closes the upstream connection (the server would otherwise drop writes silently and
let the engine generate on).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import re
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry

from llmservice.router.accesslog import AccessLog
from llmservice.router.admission import (
    AdmissionMetrics,
    GateScraper,
    RateLimited,
    RateLimiter,
    ThroughputGate,
)
from llmservice.router.auth import ApiKeys
from llmservice.router.balancer import Balancer, StickyBalancer, make_balancer, routing_key
from llmservice.router.client_connection import ClientConnection, client_connection
from llmservice.router.clients import Client
from llmservice.router.config import RouterConfig
from llmservice.router.cors import Cors
from llmservice.router.discovery import Discovery, Replica
from llmservice.router.errors import (
    GlobalRateLimited,
    KeyQueueFull,
    MethodNotAllowed,
    ModelNotFound,
    NotFound,
    PayloadTooLarge,
    QueueFull,
    RequestRateLimited,
    RouterBusy,
    RouterError,
    TokenRateLimited,
    TooManyRequests,
    Unauthorized,
    error_body,
)
from llmservice.router.keys_metrics import ApiKeysMetrics
from llmservice.router.keys_reload import ApiKeysFile
from llmservice.router.metrics import RouterMetrics
from llmservice.router.payloads import (
    Fields,
    api_chat_body,
    check_content_type,
    check_required,
    continues,
    is_true,
    parse_body,
    prompt_view,
    resolve_model,
    set_fields,
)
from llmservice.router.peers import PeerSync, static_peers
from llmservice.router.proxy import Exchange, Proxy, make_pool
from llmservice.router.retry_budget import RetryBudget
from llmservice.router.routes import API_CHAT, ROUTES, Route

if TYPE_CHECKING:
    from llmservice.router.tracing import Tracing

__all__ = ["RouterApp", "create_app"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MODELS = "/v1/models"
MODEL_PREFIX = "/v1/models/"
# A body at least this large is parsed under `RouterApp._parse_lock`, one at a time, with
# a turn of the event loop in between: each parse of a large body holds the loop for up
# to tens of milliseconds (bench/README.md), and this way other requests wait for at most
# one of them rather than for every one that arrived together.
LARGE_BODY = 1 << 20
# Set in the scope once the request body has been read (or given up on).
BODY_READ = "llmservice.body_read"
# The request headers as a dictionary, in the scope once `RouterApp._header` built it.
HEADERS = "llmservice.headers"
# An error answered before the request body was read first reads and drops the body (within
# this time and the body limit): closing a connection with unread data makes the kernel
# send a reset, which can destroy the answer before the client reads it.
DISCARD_TIMEOUT = 1.0
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")
_JSON = [(b"content-type", b"application/json")]
_NO_VIEW: Mapping[str, Any] = MappingProxyType({})  # the prompt view when a session is the key
# RFC 6750: a 401 names the scheme the client should authenticate with.
_BEARER_CHALLENGE = (b"www-authenticate", b"Bearer")
LOG_FLUSH_INTERVAL = 1.0
# How long a proxied request runs before the app starts listening for a disconnect.
WATCH_AFTER = 0.05


_REFUSALS: dict[str, tuple[type[TooManyRequests], str]] = {
    "rate_limit_requests": (RequestRateLimited, "API key {name!r} is over its requests a minute."),
    "rate_limit_tokens": (TokenRateLimited, "API key {name!r} is over its tokens a minute."),
    "global_rate_limit": (GlobalRateLimited, "The router is over its requests a minute."),
}


def _refusal(refused: RateLimited, name: str) -> TooManyRequests:
    kind, message = _REFUSALS[refused.reason]
    return kind(message.format(name=name), retry_after=refused.retry_after, headers=refused.headers)


async def _nothing() -> None:
    """The answer to a scope type the app does not serve (websocket)."""


class _ClientGone(Exception):
    """The client disconnected before its request was read."""


class RouterApp:
    """One router: an ASGI callable plus the state it routes with."""

    def __init__(
        self,
        config: RouterConfig,
        *,
        discovery: Discovery,
        balancer: Balancer,
        metrics: RouterMetrics,
        access_log: AccessLog,
        clock: Callable[[], float] = time.monotonic,
        api_keys: ApiKeys | None = None,
        api_keys_file: ApiKeysFile | None = None,
        tracing: Tracing | None = None,
        peer_discovery: Discovery | None = None,
    ) -> None:
        self.config = config
        # None when tracing is off: the request path then makes no span and no header.
        self.tracing = tracing
        # Read per request; replaced in one assignment when the keys file changes.
        self.api_keys = api_keys_file.keys if api_keys_file is not None else api_keys
        self.api_keys_file = api_keys_file
        if api_keys_file is not None:
            metrics.registry.register(ApiKeysMetrics(api_keys_file))
        self.discovery = discovery
        self.metrics = metrics
        self.access_log = access_log
        self.clock = clock
        self.admission = AdmissionMetrics(metrics.registry)
        self.proxy = Proxy(
            config,
            balancer,
            metrics,
            RetryBudget(config.retry, clock),
            clock,
            on_wait=self.admission.waited,
        )
        metrics.in_flight = lambda: self.proxy.loads
        # Told of later turns of conversations it has no record of (`note_continued`).
        self._sticky = sticky = balancer if isinstance(balancer, StickyBalancer) else None
        if sticky is not None:
            metrics.placement_shared = lambda: sticky.shared
        # Placements told to and heard from the other router replicas, when configured.
        self.peers: PeerSync | None = None
        if sticky is not None and config.peers.enabled:
            found = peer_discovery or static_peers(config.peers)
            self.peers = PeerSync(sticky, config.peers, found, metrics.registry)
        dispatcher = self.proxy.dispatcher
        self.admission.queued = dispatcher.queued
        self.admission.limits = dispatcher.limits
        self.limiter = RateLimiter(config.admission.requests_per_minute, clock())
        self._engine_priority = config.admission.engine_priority
        self.gate_scraper: GateScraper | None = None
        floor = config.admission.min_tokens_per_second_per_request
        if floor is not None:
            self.gate_scraper = GateScraper(
                ThroughputGate(floor),
                lambda: {name: replica.url for name, replica in self.proxy.replicas.items()},
                dispatcher.set_allowance,
                interval=config.admission.gate_interval,
                clock=clock,
            )
            # Every replica, open ones as 0: a dashboard shows the gate working, not no data.
            self.admission.closed = lambda: (
                (name, int(name in dispatcher.closed)) for name in sorted(dispatcher.replicas)
            )
        # None when CORS is off: the request path then looks at no CORS header.
        self.cors = (
            Cors(config.cors, config.session_header, config.request_id_header)
            if config.cors.enabled
            else None
        )
        self.draining = False
        self.body_bytes_held = 0  # request body bytes held by all requests (`_read_body`)
        self._body_budget = config.body_budget
        self._flusher: asyncio.Task[None] | None = None
        self._keys_watch: asyncio.Task[None] | None = None
        self._session_header = config.session_header.lower().encode()
        self._request_id_header = config.request_id_header.lower().encode()
        self._models = self._models_body()
        self._names = config.model_names
        self._any_name = config.accept_any_model_name
        self._parse_lock = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None  # set at startup
        # Request ids: a random per-process prefix and a counter, unique without a syscall.
        self._id_prefix = secrets.token_hex(8)
        self._ids = itertools.count()

    # -- lifecycle ----------------------------------------------------------------------

    async def startup(self) -> None:
        """Open the upstream pool, start discovery and the keys file watch."""
        # Kept: on Python 3.11 every asyncio.get_running_loop() (and current_task() without
        # a loop) is a getpid system call, and the request path would make several.
        self._loop = asyncio.get_running_loop()
        self.proxy.pool = make_pool(self.config)
        self._flusher = asyncio.create_task(self._flush_logs())
        if self.api_keys_file is not None:
            self._keys_watch = asyncio.create_task(self.api_keys_file.watch(self.use_api_keys))
        await self.discovery.start(self._on_replicas)
        if self.peers is not None:
            await self.peers.start()
        if self.gate_scraper is not None:
            self.gate_scraper.start()

    async def shutdown(self) -> None:
        if self.gate_scraper is not None:
            await self.gate_scraper.stop()
        if self.peers is not None:
            await self.peers.stop()
        for task in (self._flusher, self._keys_watch):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._flusher = self._keys_watch = None
        self.access_log.flush()
        if self.tracing is not None:
            await asyncio.to_thread(self.tracing.shutdown)  # flushes queued spans
        await self.discovery.stop()
        await self.proxy.outliers.close()
        if self.proxy.pool is not None:
            await self.proxy.pool.close()
            self.proxy.pool = None

    async def _flush_logs(self) -> None:
        while True:
            await asyncio.sleep(LOG_FLUSH_INTERVAL)
            self.access_log.flush()

    def begin_drain(self) -> None:
        """Fail /readyz from now on; requests in flight and new ones are still served."""
        self.draining = True

    def use_api_keys(self, keys: ApiKeys) -> None:
        """From the next request on, authenticate with `keys`; requests in flight go on."""
        self.api_keys = keys

    def _on_replicas(self, routable: dict[str, Replica]) -> None:
        self.proxy.set_replicas(routable)

    @property
    def ready(self) -> tuple[bool, str]:
        if self.draining:
            return False, "draining"
        if not self.discovery.synced:
            return False, "replica discovery has not synced yet"
        if not self.proxy.replicas:
            if self.config.admission.cold_start_timeout > 0:
                # Scaled to zero: stay in the Service so that requests reach the router,
                # which holds them while the engine starts.
                return True, "no engine replica yet; requests are held for one"
            return False, "no engine replica is ready"
        return True, "ok"

    # -- ASGI ---------------------------------------------------------------------------

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # A plain function that hands over the handler's coroutine: an ``async def`` here
        # would be one more coroutine to suspend and resume on every await of every request
        # (each streamed chunk). The server is told the app is ASGI 3 (`server_config`).
        kind = scope["type"]
        if kind == "http":
            return self._http(scope, receive, send)
        if kind == "lifespan":
            return self._lifespan(receive, send)
        return _nothing()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as error:  # report to the server, which exits
                    await send({"type": "lifespan.startup.failed", "message": repr(error)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _header(self, scope: Scope, name: bytes) -> bytes | None:
        """The first value of request header ``name`` (lowercase), or None."""
        # A request asks for four or five headers: one dictionary, built the first time
        # (reversed, so that the first of repeated headers wins), beats as many scans.
        headers: dict[bytes, bytes] | None = scope.get(HEADERS)
        if headers is None:
            headers = scope[HEADERS] = dict(reversed(scope["headers"]))
        return headers.get(name)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = self.clock()
        path: str = scope["path"]
        given = self._header(scope, self._request_id_header)
        request_id = given.decode("latin-1") if given else ""
        if not request_id or not _REQUEST_ID.match(request_id):
            request_id = f"{self._id_prefix}{next(self._ids):08x}"
        proxied = ROUTES.get(path)
        # The client's connection past ASGI, under the router's own server (None otherwise).
        connection = client_connection(scope)
        exchange = Exchange(request_id=request_id, route=path if proxied else "other", model="")
        if self.tracing is not None and proxied is not None:
            exchange.span = self.tracing.start(scope["headers"], path)
        try:
            if self.cors is not None and self.cors.apply(
                scope["method"], scope["headers"], exchange.extra_headers
            ):
                await self._preflight(send, exchange)
                return
            if self.api_keys is not None and (
                proxied is not None or path == MODELS or path.startswith(MODEL_PREFIX)
            ):
                exchange.client = self._authenticate(self.api_keys, scope, exchange)
            if proxied is not None:
                if self.limiter.limited(exchange.client):
                    self._rate_limit(exchange)
                await self._proxied(scope, receive, send, connection, exchange, started, proxied)
            else:
                await self._local(scope, send, connection, exchange)
        except RouterError as error:
            exchange.cause = error.cause
            if isinstance(error, TooManyRequests):
                self._refused(error, exchange)
            else:
                exchange.extra_headers.extend(error.headers)
            if not exchange.response_started:
                exchange.status = error.status
                if BODY_READ not in scope and self._has_body(scope):
                    await self._discard_body(receive)
                body = error_body(error, request_id)
                await self._send(send, connection, error.status, body, exchange)
        except _ClientGone:
            exchange.status, exchange.cause = 499, "client_disconnect"
        finally:
            self.body_bytes_held -= exchange.body_bytes
            self._record(exchange, started, path, scope["method"])

    def _has_body(self, scope: Scope) -> bool:
        length = self._header(scope, b"content-length")
        if length is not None:
            return length not in (b"0", b"")
        return self._header(scope, b"transfer-encoding") is not None

    async def _discard_body(self, receive: Receive) -> None:
        """Read and drop the request body, up to the body limit and `DISCARD_TIMEOUT`."""
        left = self.config.max_body_bytes
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DISCARD_TIMEOUT):
                while left > 0:
                    message = await receive()
                    if message["type"] == "http.disconnect" or not message.get("more_body"):
                        return
                    left -= len(message.get("body", b""))

    def _rate_limit(self, exchange: Exchange) -> None:
        """Take the request from its buckets, or refuse it with a 429."""
        client, now = exchange.client, self.clock()
        refused = self.limiter.admit(client, now)
        if refused is not None:
            raise _refusal(refused, client.name)

    def _refused(self, error: TooManyRequests, exchange: Exchange) -> None:
        client = exchange.client
        self.admission.reject(error.code or error.cause, client.name)
        limited = self.limiter.limited(client)
        if isinstance(error, (QueueFull, KeyQueueFull)) and limited:
            self.limiter.refund(client, self.clock())  # never served: it costs the key nothing
        if limited and not error.headers_included:
            exchange.extra_headers.extend(self.limiter.headers(client, self.clock()))
        exchange.extra_headers.extend(error.headers)

    def _authenticate(self, api_keys: ApiKeys, scope: Scope, exchange: Exchange) -> Client:
        client = api_keys.authenticate(self._header(scope, b"authorization"))
        if client is None:
            exchange.extra_headers.append(_BEARER_CHALLENGE)
            raise Unauthorized("Missing or unknown API key: send Authorization: Bearer <key>.")
        return client

    def _record(self, exchange: Exchange, started: float, path: str, method: str) -> None:
        duration = self.clock() - started
        first_byte = None if exchange.first_byte_at is None else exchange.first_byte_at - started
        if exchange.cause is not None:
            self.metrics.error(exchange.cause)
        if exchange.route != "other":
            self.metrics.observe_request(
                exchange.route, exchange.status, exchange.model or "-", duration, first_byte
            )
            self.metrics.add_tokens(exchange.prompt_tokens, exchange.completion_tokens)
            client = exchange.client
            self.admission.add_tokens(
                client.name, exchange.prompt_tokens, exchange.completion_tokens
            )
            if client.tokens_per_minute is not None:
                used = exchange.prompt_tokens + exchange.completion_tokens
                self.limiter.charge_tokens(client, used, self.clock())
        self.access_log.write(exchange, method, path, duration, first_byte)
        if exchange.span is not None and self.tracing is not None:
            self.tracing.end(exchange.span, exchange, method)

    async def _send(
        self,
        send: Send,
        connection: ClientConnection | None,
        status: int,
        body: bytes,
        exchange: Exchange,
        content_type: list[tuple[bytes, bytes]] = _JSON,
    ) -> None:
        headers = [
            *content_type,
            (b"content-length", str(len(body)).encode()),
            (b"x-request-id", exchange.request_id.encode()),
            *exchange.extra_headers,
        ]
        exchange.status = status
        exchange.response_started = True
        if connection is not None and connection.start(status, headers, chunked=False):
            connection.write(body, False)  # head and body in one write, past ASGI
        else:
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body, "more_body": False})
        exchange.response_finished = True

    async def _preflight(self, send: Send, exchange: Exchange) -> None:
        """A CORS preflight's answer: 204 with the headers `Cors.apply` chose, no body."""
        headers = [(b"x-request-id", exchange.request_id.encode()), *exchange.extra_headers]
        exchange.status = 204
        exchange.response_started = True
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        exchange.response_finished = True

    # -- local endpoints ----------------------------------------------------------------

    def _model_card(self, name: str) -> dict[str, Any]:
        return {"id": name, "object": "model", "created": 0, "owned_by": "llmservice",
                "root": self.config.served_model_name}  # fmt: skip

    def _models_body(self) -> bytes:
        data = [self._model_card(name) for name in self.config.model_names]
        return json.dumps({"object": "list", "data": data}).encode()

    async def _model(
        self, send: Send, connection: ClientConnection | None, exchange: Exchange, name: str
    ) -> None:
        """One model as the OpenAI API's ``GET /v1/models/{model}`` answers it."""
        if name not in self._names and not (self._any_name and name):
            raise ModelNotFound(f"The model {name!r} does not exist.", param="model")
        card = json.dumps(self._model_card(name)).encode()
        await self._send(send, connection, 200, card, exchange)

    async def _healthz(
        self, send: Send, connection: ClientConnection | None, exchange: Exchange
    ) -> None:
        """Liveness, and each replica's breaker (`llmservice.router.outliers`): the one
        handler of /healthz and its alias /health."""
        body = {"status": "ok", "replicas": self.proxy.outliers.snapshot()}
        await self._send(send, connection, 200, json.dumps(body).encode(), exchange)

    async def _local(
        self, scope: Scope, send: Send, connection: ClientConnection | None, exchange: Exchange
    ) -> None:
        path = scope["path"]
        handlers = {"/healthz", "/health", "/readyz", "/metrics", MODELS}
        if path not in handlers and not path.startswith(MODEL_PREFIX):
            raise NotFound(f"Unknown path {path!r}.")
        if scope["method"] not in ("GET", "HEAD"):
            raise MethodNotAllowed(f"Use GET for {path}.")
        if path in ("/healthz", "/health"):
            await self._healthz(send, connection, exchange)
        elif path.startswith(MODEL_PREFIX):
            await self._model(send, connection, exchange, path[len(MODEL_PREFIX) :])
        elif path == "/readyz":
            ready, reason = self.ready
            body = json.dumps({"status": "ok" if ready else "unavailable", "reason": reason})
            await self._send(send, connection, 200 if ready else 503, body.encode(), exchange)
        elif path == "/metrics":
            kind = [(b"content-type", CONTENT_TYPE_LATEST.encode())]
            await self._send(send, connection, 200, self.metrics.render(), exchange, kind)
        else:
            await self._send(send, connection, 200, self._models, exchange)

    # -- proxied endpoints --------------------------------------------------------------

    async def _read_body(
        self,
        scope: Scope,
        receive: Receive,
        connection: ClientConnection | None,
        exchange: Exchange,
    ) -> bytes:
        """The request body, within the body limit and the router's budget of bytes held.

        Every byte read is charged to the budget (``body_bytes_held``) until the request ends
        (`_http` gives them back): a flood of large bodies gets 503s, not the memory limit.
        """
        limit = self.config.max_body_bytes
        declared = self._header(scope, b"content-length")
        length = int(declared) if declared is not None and declared.isdigit() else None
        if length is not None and length <= limit:
            self._check_budget(length, exchange)  # refused unread: the body is dropped
        scope[BODY_READ] = True  # from here on, read to the end or given up on
        if length is not None and length > limit:
            raise PayloadTooLarge(f"The request body exceeds {limit} bytes.")
        whole = None if connection is None else connection.take_body()
        if whole is not None:  # it came with the head: no receive() needed
            size = len(whole)
            if size > limit:
                raise PayloadTooLarge(f"The request body exceeds {limit} bytes.")
            if size:
                self._hold(size, exchange)
            return whole
        parts: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientGone
            chunk = message.get("body", b"")
            if chunk:
                more = len(chunk)
                size += more
                if size > limit:
                    raise PayloadTooLarge(f"The request body exceeds {limit} bytes.")
                self._hold(more, exchange)
                parts.append(chunk)
            if not message.get("more_body", False):
                return parts[0] if len(parts) == 1 else b"".join(parts)

    def _hold(self, more: int, exchange: Exchange) -> None:
        """Charge ``more`` body bytes of ``exchange`` to the budget, or refuse them."""
        self._check_budget(more, exchange)
        self.body_bytes_held += more
        exchange.body_bytes += more

    def _check_budget(self, more: int, exchange: Exchange) -> None:
        """Refuse ``more`` body bytes that would take the router over its budget."""
        others = self.body_bytes_held - exchange.body_bytes
        if others and self.body_bytes_held + more > self._body_budget:
            raise RouterBusy(
                "The router holds as many request bodies as it can; retry in a moment."
            )

    async def _parse(self, raw: bytes) -> Fields:
        if len(raw) < LARGE_BODY:
            return parse_body(raw)
        async with self._parse_lock:
            fields = parse_body(raw)
            await asyncio.sleep(0)  # let what queued up during the parse run first
            return fields

    async def _proxied(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        connection: ClientConnection | None,
        exchange: Exchange,
        started: float,
        route: Route,
    ) -> None:
        path: str = route.path
        if scope["method"] != "POST":
            raise MethodNotAllowed(f"Use POST for {path}.")
        check_content_type(self._header(scope, b"content-type"))
        raw = await self._read_body(scope, receive, connection, exchange)
        fields = await self._parse(raw)
        session_value = self._header(scope, self._session_header)
        session = session_value.decode("latin-1") if session_value else None
        served = self.config.served_model_name
        changes: dict[str, bytes] = {}
        if self._engine_priority:
            # vLLM serves lower values first; the key's priority replaces the client's.
            changes["priority"] = str(-exchange.client.priority).encode()
        model = resolve_model(
            fields, self._names, required=route.model_required, any_name=self._any_name
        )
        # Names outside the served ones (accept_any_model_name) are not metric labels.
        exchange.model = model if model in self._names else served
        check_required(route, fields)
        if path == API_CHAT:
            if session is None:
                session = uuid.uuid4().hex
            exchange.extra_headers.append((self._session_header, session.encode("latin-1")))
            raw = api_chat_body(raw, served, changes)
            path = "/v1/chat/completions"
        else:
            if model is not None and model != served:
                changes["model"] = json.dumps(served).encode()
            if changes:
                raw = set_fields(raw, fields, changes)
        exchange.stream = is_true(fields.stream)
        exchange.session = session
        # The prompt is decoded for a key only when no session names one.
        exchange.key, exchange.key_kind = routing_key(
            session,
            _NO_VIEW if session else prompt_view(route.prompt, fields),
            self.config.balancer.prefix_chars,
        )
        # A later turn under a key this router has no record of: another router replica
        # placed its conversation (a session id made up here above tells nothing).
        sticky, key = self._sticky, exchange.key
        made_up = session_value is None and session is not None
        if (
            sticky is not None
            and key is not None
            and not made_up
            and sticky.unknown(key)
            and continues(route.prompt, fields)
        ):
            sticky.note_continued(key)
        trace_lines = None
        if exchange.span is not None and self.tracing is not None:
            trace_lines = self.tracing.upstream_lines(exchange.span)
        headers = self.proxy.upstream_headers(
            scope["headers"], exchange.request_id, trace_lines, scope["client"], scope["scheme"]
        )
        target = path + (
            "?" + scope["query_string"].decode("latin-1") if scope["query_string"] else ""
        )
        # Forwarded from here, not from a helper coroutine: each level of coroutines is
        # suspended and resumed again on every await of the request (each streamed chunk).
        task = asyncio.current_task(self._loop)
        if task is None:  # pragma: no cover - always inside a task under a server
            raise RuntimeError("no current task")
        watch = _DisconnectWatch(receive, task, exchange)
        if connection is not None:
            connection.on_disconnect(watch.hung_up)  # told by the server: no task needed
            on_slow, slow_after = None, math.inf
        else:  # another server: listen with a task, from WATCH_AFTER seconds in
            on_slow, slow_after = watch.start, WATCH_AFTER
        try:
            await self.proxy.forward(
                exchange,
                send,
                target,
                raw,
                headers,
                started,
                task,
                on_slow,
                slow_after,
                connection,
            )
        except asyncio.CancelledError:
            if not watch.disconnected:
                raise
            task.uncancel()
            exchange.status, exchange.cause = 499, "client_disconnect"
        finally:
            watch.close()
            if connection is not None:
                connection.on_disconnect(None)


class _DisconnectWatch:
    """Cancels a proxied request's task when its client disconnects.

    The router's own server reports a hang-up by calling `hung_up` (through
    `llmservice.router.client_connection`). Under another server `start` listens for
    ``http.disconnect`` with a task; most proxied requests finish in milliseconds, and
    listening costs a task, so it runs only once the request has lasted `WATCH_AFTER`
    seconds (on a timer of its own, started by `llmservice.router.deadlines.Watchdog`).
    """

    __slots__ = ("_exchange", "_receive", "_task", "_watcher", "disconnected")

    def __init__(self, receive: Receive, task: asyncio.Task[Any], exchange: Exchange) -> None:
        self._receive = receive
        self._task = task
        self._exchange = exchange
        self._watcher: asyncio.Future[Message] | None = None
        self.disconnected = False

    def start(self) -> None:
        self._watcher = asyncio.ensure_future(self._receive())
        self._watcher.add_done_callback(self._on_message)

    def hung_up(self) -> None:
        if self._exchange.response_finished:
            return
        self.disconnected = True
        self._task.cancel()

    def _on_message(self, done: asyncio.Future[Message]) -> None:
        if done.cancelled() or done.exception() is not None:
            return
        self.hung_up()  # the only message left once the body is read is http.disconnect

    def close(self) -> None:
        watcher = self._watcher
        if watcher is not None and not watcher.done():
            watcher.remove_done_callback(self._on_message)
            watcher.cancel()


def create_app(
    config: RouterConfig,
    *,
    discovery: Discovery,
    registry: CollectorRegistry | None = None,
    access_log: AccessLog | None = None,
    balancer: Balancer | None = None,
    clock: Callable[[], float] = time.monotonic,
    api_keys: ApiKeys | None = None,
    api_keys_file: ApiKeysFile | None = None,
    peer_discovery: Discovery | None = None,
) -> RouterApp:
    """A router app; every collaborator can be injected, none is shared between apps.

    `api_keys` are fixed keys; `api_keys_file` is a keys file the app watches and reloads.
    With ``config.tracing`` enabled the app exports a span per proxied request.
    """
    tracing = None
    if config.tracing.otlp_endpoint is not None:
        # Imported here: a router without tracing loads no OpenTelemetry code.
        from llmservice.router.tracing import Tracing

        tracing = Tracing(config.tracing.otlp_endpoint, config.tracing.sampling_ratio)
    return RouterApp(
        config,
        discovery=discovery,
        balancer=balancer or make_balancer(config.balancer),
        metrics=RouterMetrics(registry or CollectorRegistry(auto_describe=True)),
        access_log=access_log or AccessLog(),
        clock=clock,
        api_keys=api_keys,
        api_keys_file=api_keys_file,
        tracing=tracing,
        peer_discovery=peer_discovery,
    )
