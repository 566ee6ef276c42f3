"""The simulator's HTTP surface: a pure ASGI app with vLLM's endpoints.

    POST /v1/chat/completions   POST /v1/completions   (streaming and not)
    GET  /v1/models   GET /health   GET /ping   GET /version   GET /metrics

Every response carries `x-inference-pod: <replica name>`, and `x-request-id` when the
request sent one. With `--api-key`, `/v1/*` requires `Authorization: Bearer <key>`, as in
vLLM. Bad input always gets a 4xx with vLLM's error body; nothing a client sends can make
the app answer 500 or hang.

A client that disconnects aborts its sequence at once: a watcher awaits `http.disconnect`
for each completion request and calls `Engine.abort()`, which frees the slot before the
next engine step.

The engine's step loop starts on the first request (or at ASGI lifespan startup) and stops
at lifespan shutdown.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from llmservice.sim.config import SimConfig
from llmservice.sim.engine import Engine, Sequence
from llmservice.sim.metrics import SimMetrics, render_metrics
from llmservice.sim.protocol import (
    APIError,
    ChunkWriter,
    Kind,
    ParsedRequest,
    final_body,
    new_id,
    parse_request,
)
from llmservice.vllm_release import VLLM_VERSION

if TYPE_CHECKING:
    from llmservice.sim.tracing import EngineTracing

__all__ = ["SimApp", "create_app"]

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MAX_BODY_BYTES = 32 * 1024 * 1024
# The release the simulator imitates, marked as simulated.
VERSION = f"{VLLM_VERSION}-sim"
_JSON = b"application/json"
_SSE = b"text/event-stream; charset=utf-8"
_PROMETHEUS = b"text/plain; version=0.0.4; charset=utf-8"


def _permission(created: int) -> dict[str, Any]:
    """The permission card vLLM lists with each model (OpenAI's legacy shape)."""
    return {
        "id": f"modelperm-{os.urandom(8).hex()}",
        "object": "model_permission",
        "created": created,
        "allow_create_engine": False,
        "allow_sampling": True,
        "allow_logprobs": True,
        "allow_search_indices": False,
        "allow_view": True,
        "allow_fine_tuning": False,
        "organization": "*",
        "group": None,
        "is_blocking": False,
    }


class SimApp:
    """One simulated vLLM replica as an ASGI callable; see `create_app`."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.metrics = SimMetrics(config)
        self.engine = Engine(config, self.metrics)
        self.tracing: EngineTracing | None = None
        if config.otlp_traces_endpoint is not None:
            # Imported here: a simulator without the flag loads no OpenTelemetry code.
            from llmservice.sim.tracing import EngineTracing

            self.tracing = EngineTracing(config.otlp_traces_endpoint)
        self._pod = [(b"x-inference-pod", config.replica_name.encode())]
        self._models_body = self._models()
        self._routes: dict[tuple[str, str], Callable[[Scope, Receive, Send], Awaitable[None]]] = {
            ("POST", "/v1/chat/completions"): self._chat,
            ("POST", "/v1/completions"): self._completions,
            ("GET", "/v1/models"): self._list_models,
            ("GET", "/health"): self._health,
            ("GET", "/ping"): self._health,
            ("POST", "/ping"): self._health,
            ("GET", "/version"): self._version,
            ("GET", "/metrics"): self._metrics,
        }
        self._paths = {path for _, path in self._routes}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.engine.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.engine.stop()
                if self.tracing is not None:
                    await asyncio.to_thread(self.tracing.shutdown)
                await send({"type": "lifespan.shutdown.complete"})
                return

    # Plumbing.

    def _headers(self, scope: Scope, content_type: bytes, length: int | None) -> list[Any]:
        headers = [(b"content-type", content_type), *self._pod]
        if length is not None:
            headers.append((b"content-length", str(length).encode()))
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                headers.append((b"x-request-id", value))
        return headers

    async def _respond(
        self, scope: Scope, send: Send, status: int, body: bytes, content_type: bytes = _JSON
    ) -> None:
        headers = self._headers(scope, content_type, len(body))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _error(self, scope: Scope, send: Send, error: APIError) -> None:
        await self._respond(scope, send, error.status, error.body())

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        method, path = scope["method"], scope["path"]
        handler = self._routes.get((method, path))
        if handler is None:
            status = 405 if path in self._paths else 404
            detail = "Method Not Allowed" if status == 405 else "Not Found"
            body = json.dumps({"detail": detail}).encode()
            await self._respond(scope, send, status, body)
            return
        if self.config.api_key and path.startswith("/v1") and not self._authorized(scope):
            await self._respond(scope, send, 401, b'{"error":"Unauthorized"}')
            return
        await handler(scope, receive, send)

    def _authorized(self, scope: Scope) -> bool:
        expected = f"Bearer {self.config.api_key}".encode()
        for name, value in scope["headers"]:
            if name == b"authorization":
                return hmac.compare_digest(value, expected)
        return False

    async def _read_body(self, receive: Receive) -> bytes | None:
        """The request body, or None if the client left or sent too much."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    # Simple endpoints.

    def _models(self) -> bytes:
        created = int(time.time())
        cards: list[dict[str, Any]] = [
            {
                "id": name,
                "object": "model",
                "created": created,
                "owned_by": "vllm",
                "root": self.config.model,
                "parent": None,
                "max_model_len": self.config.max_model_len,
                "permission": [_permission(created)],
            }
            for name in self.config.model_names
        ]
        return json.dumps({"object": "list", "data": cards}).encode()

    async def _list_models(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._respond(scope, send, 200, self._models_body)

    async def _health(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._respond(scope, send, 200, b"")

    async def _version(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._respond(scope, send, 200, json.dumps({"version": VERSION}).encode())

    async def _metrics(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._respond(scope, send, 200, render_metrics(self.metrics), _PROMETHEUS)

    # Completions.

    async def _chat(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._complete("chat", scope, receive, send)

    async def _completions(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._complete("completion", scope, receive, send)

    async def _complete(self, kind: Kind, scope: Scope, receive: Receive, send: Send) -> None:
        raw = await self._read_body(receive)
        if raw is None:
            await self._error(scope, send, APIError(413, "Request body too large."))
            return
        try:
            request = parse_request(kind, raw, self.config)
        except APIError as exc:
            await self._error(scope, send, exc)
            return
        request_id = new_id(kind)
        seq = self.engine.new_sequence(
            request_id,
            request.prompt_ids,
            request.max_tokens,
            request.stop,
            request.stream,
            request.priority,
        )
        span = self.tracing.start(scope["headers"]) if self.tracing is not None else None
        self.engine.submit(seq)
        watcher = asyncio.get_running_loop().create_task(self._watch(receive, seq))
        try:
            if request.stream:
                await self._stream(kind, scope, send, request, request_id, seq)
            else:
                await seq.wait()
                if seq.finish_reason == "abort":
                    error = APIError(503, "The engine is shutting down.", "ServiceUnavailable")
                    await self._error(scope, send, error)
                    return
                if seq.finish_reason == "error":
                    error = APIError(500, "The engine failed.", "InternalServerError")
                    await self._error(scope, send, error)
                    return
                body = final_body(kind, request_id, self.config.served_name, seq)
                await self._respond(scope, send, 200, body)
        finally:
            watcher.cancel()
            if not seq.done:
                self.engine.abort(seq)
            if span is not None and self.tracing is not None:
                self.tracing.end(
                    span,
                    request_id=request_id,
                    model=self.config.served_name,
                    prompt_tokens=seq.prompt_len,
                    completion_tokens=len(seq.words),
                    queued_seconds=max(0.0, seq.scheduled_at - seq.arrival),
                )

    async def _watch(self, receive: Receive, seq: Sequence) -> None:
        """Abort the sequence as soon as its client goes away."""
        while not seq.done:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.engine.abort(seq)
                return

    async def _stream(
        self,
        kind: Kind,
        scope: Scope,
        send: Send,
        request: ParsedRequest,
        request_id: str,
        seq: Sequence,
    ) -> None:
        writer = ChunkWriter(kind, request_id, self.config.served_name, request)
        headers = self._headers(scope, _SSE, None)
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        first = writer.first()
        if first:
            await send({"type": "http.response.body", "body": first, "more_body": True})
        while True:
            await seq.wait()
            pieces, seq.pending = seq.pending, []
            if seq.done:
                last = pieces.pop() if pieces else None
                body = writer.tokens(pieces) + writer.last(last, seq)
                await send({"type": "http.response.body", "body": body, "more_body": False})
                return
            if pieces:
                body = writer.tokens(pieces)
                await send({"type": "http.response.body", "body": body, "more_body": True})


def create_app(config: SimConfig | None = None) -> SimApp:
    """A simulated vLLM replica as an ASGI app; `app.engine` and `app.metrics` are live."""
    return SimApp(config or SimConfig())
