"""Traces: the router's span per request reaches a real OTLP/HTTP receiver on loopback, and
the engine gets a ``traceparent`` naming it, so one trace covers router and engine."""

from __future__ import annotations

import asyncio
import gzip
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any

import aiohttp
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from llmservice.router import BalancerConfig, RouterConfig, Strategy, TracingConfig
from llmservice.router.auth import parse_api_keys
from llmservice.sim import SimConfig, SimServer, TimingProfile

from .backends import FakeBackend, Mode, refusing_url
from .conftest import CHAT, RouterServer, config, run

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
CLIENT_TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
PROMPT = {"model": "llama", "prompt": "hello"}
KEY = "sk-tracing-test-key-0123456789"


@dataclass
class OtlpReceiver:
    """An OTLP/HTTP traces endpoint that decodes each ExportTraceServiceRequest it gets."""

    spans: list[tuple[dict[str, Any], Span]] = field(default_factory=list)
    posts: int = 0
    port: int = 0
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/traces"

    async def _traces(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        export = ExportTraceServiceRequest.FromString(body)
        self.posts += 1
        for resource_spans in export.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                self.spans.extend((resource, span) for span in scope_spans.spans)
        answer = ExportTraceServiceResponse().SerializeToString()
        return web.Response(body=answer, content_type="application/x-protobuf")

    async def __aenter__(self) -> OtlpReceiver:
        app = web.Application()
        app.router.add_post("/v1/traces", self._traces)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return None if kind is None else getattr(value, kind)


def attributes(span: Span) -> dict[str, Any]:
    return {a.key: _value(a.value) for a in span.attributes}


def traceparent_parts(header: str) -> tuple[str, str, bool]:
    """Trace id, parent span id and the sampled flag of a W3C ``traceparent``."""
    version, trace_id, span_id, flags = header.split("-")
    assert version == "00"
    return trace_id, span_id, bool(int(flags, 16) & 1)


def traced(receiver: OtlpReceiver, *backends: str, **changes: Any) -> RouterConfig:
    return config(*backends, tracing=TracingConfig(otlp_endpoint=receiver.url), **changes)


def test_a_client_trace_continues_through_the_router_to_the_engine() -> None:
    keys = parse_api_keys(f"keys:\n  - name: team-a\n    key: {KEY}\n")

    async def scenario() -> None:
        async with OtlpReceiver() as receiver, FakeBackend(Mode.JSON) as backend:
            router = RouterServer(traced(receiver, backend.url), api_keys=keys)
            async with router, aiohttp.ClientSession() as client:
                headers = {
                    "Authorization": f"Bearer {KEY}",
                    "traceparent": CLIENT_TRACEPARENT,
                    "tracestate": "vendor=abc",
                    "X-Session-ID": "conversation-1",
                }
                url = router.url + "/v1/chat/completions"
                async with client.post(url, json=CHAT, headers=headers) as response:
                    assert response.status == 200
            # The router's shutdown flushed the batch: the span is there without waiting.
            [(resource, span)] = receiver.spans
        assert resource["service.name"] == "llmservice-router"
        assert span.trace_id.hex() == TRACE_ID
        assert span.parent_span_id.hex() == PARENT_ID
        assert span.name == "POST /v1/chat/completions"
        assert span.kind == Span.SPAN_KIND_SERVER
        assert attributes(span) == {
            "http.request.method": "POST",
            "http.route": "/v1/chat/completions",
            "http.response.status_code": 200,
            "gen_ai.request.model": "llama",
            "llmservice.request_id": router.log_lines()[0]["request_id"],
            "llmservice.client": "team-a",
            "llmservice.replica": backend.url,
            "llmservice.routing.key": "session",
            "llmservice.routing.primary": True,
            "llmservice.attempts": 1,
            "llmservice.queue_wait_seconds": 0.0,
        }
        # The engine's parent is the router's span, in the client's trace and state.
        sent = backend.requests[0].headers
        assert traceparent_parts(sent["traceparent"]) == (TRACE_ID, span.span_id.hex(), True)
        assert sent["tracestate"] == "vendor=abc"

    run(scenario())


def test_without_a_client_traceparent_the_router_starts_a_trace() -> None:
    async def scenario() -> None:
        async with OtlpReceiver() as receiver, FakeBackend(Mode.JSON) as backend:
            async with (
                RouterServer(traced(receiver, backend.url)) as router,
                aiohttp.ClientSession() as client,
            ):
                url = router.url + "/v1/chat/completions"
                async with client.post(url, json=CHAT) as response:
                    assert response.status == 200
            [(_, span)] = receiver.spans
        assert span.parent_span_id == b""
        assert span.trace_id not in (bytes(16), bytes.fromhex(TRACE_ID))
        assert attributes(span)["llmservice.client"] == "anonymous"
        assert attributes(span)["llmservice.routing.key"] == "prefix"
        sent = backend.requests[0].headers
        assert traceparent_parts(sent["traceparent"]) == (
            span.trace_id.hex(),
            span.span_id.hex(),
            True,
        )
        assert "tracestate" not in sent

    run(scenario())


def test_a_retry_is_counted_on_the_span() -> None:
    async def scenario() -> None:
        async with OtlpReceiver() as receiver, FakeBackend(Mode.JSON) as good:
            base = traced(receiver, refusing_url(), good.url)
            cfg = replace(base, balancer=BalancerConfig(strategy=Strategy.ROUND_ROBIN))
            async with RouterServer(cfg) as router, aiohttp.ClientSession() as client:
                for _ in range(4):  # round robin puts the refusing replica first at times
                    async with client.post(router.url + "/v1/completions", json=PROMPT) as r:
                        assert r.status == 200
            spans = [attributes(span) for _, span in receiver.spans]
        assert len(spans) == 4
        assert all(s["llmservice.replica"] == good.url for s in spans)
        attempts = {s["llmservice.attempts"] for s in spans}
        assert 2 in attempts
        assert attempts <= {1, 2}
        assert all(s["http.route"] == "/v1/completions" for s in spans)

    run(scenario())


def test_the_queue_wait_is_on_the_span() -> None:
    async def scenario() -> None:
        async with (
            OtlpReceiver() as receiver,
            FakeBackend(Mode.STREAM, chunks=3, delay=0.1) as slow,
        ):
            base = traced(receiver, slow.url)
            cfg = replace(base, admission=replace(base.admission, max_in_flight_per_replica=1))
            async with RouterServer(cfg) as router, aiohttp.ClientSession() as client:
                url = router.url + "/v1/chat/completions"

                async def one() -> int:
                    async with client.post(url, json={**CHAT, "stream": True}) as response:
                        await response.read()
                        return response.status

                assert await asyncio.gather(one(), one()) == [200, 200]
            spans = [attributes(span) for _, span in receiver.spans]
        # The one slot made the second request wait behind a stream of three 0.1 s chunks.
        waits = sorted(s["llmservice.queue_wait_seconds"] for s in spans)
        assert len(waits) == 2
        assert waits[0] == 0.0
        assert waits[1] > 0.2

    run(scenario())


def test_an_engine_5xx_marks_the_span_as_an_error() -> None:
    async def scenario() -> None:
        async with OtlpReceiver() as receiver, FakeBackend(Mode.STATUS, status=503) as backend:
            async with (
                RouterServer(traced(receiver, backend.url)) as router,
                aiohttp.ClientSession() as client,
            ):
                url = router.url + "/v1/chat/completions"
                async with client.post(url, json=CHAT) as response:
                    assert response.status == 503
            [(_, span)] = receiver.spans
        assert attributes(span)["http.response.status_code"] == 503
        assert attributes(span)["error.type"] == "upstream_5xx"
        assert span.status.code == Status.STATUS_CODE_ERROR

    run(scenario())


def test_unsampled_traces_are_propagated_but_not_exported() -> None:
    async def scenario() -> None:
        async with OtlpReceiver() as receiver, FakeBackend(Mode.JSON) as backend:
            tracing = TracingConfig(otlp_endpoint=receiver.url, sampling_ratio=0.0)
            async with (
                RouterServer(config(backend.url, tracing=tracing)) as router,
                aiohttp.ClientSession() as client,
            ):
                url = router.url + "/v1/chat/completions"
                async with client.post(url, json=CHAT) as response:
                    assert response.status == 200
                unsampled = {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-00"}
                async with client.post(url, json=CHAT, headers=unsampled) as response:
                    assert response.status == 200
            assert receiver.posts == 0
        new, continued = (traceparent_parts(r.headers["traceparent"]) for r in backend.requests)
        assert new[2] is False
        assert (continued[0], continued[2]) == (TRACE_ID, False)
        assert continued[1] != PARENT_ID

    run(scenario())


def test_with_tracing_off_trace_headers_pass_through_and_none_is_made() -> None:
    async def scenario() -> None:
        async with OtlpReceiver() as receiver, FakeBackend(Mode.JSON) as backend:
            async with (
                RouterServer(config(backend.url)) as router,
                aiohttp.ClientSession() as client,
            ):
                assert router.app.tracing is None
                url = router.url + "/v1/chat/completions"
                headers = {"traceparent": CLIENT_TRACEPARENT, "tracestate": "vendor=abc"}
                async with client.post(url, json=CHAT, headers=headers) as response:
                    assert response.status == 200
                async with client.post(url, json=CHAT) as response:
                    assert response.status == 200
            assert receiver.posts == 0
        with_header, without = (r.headers for r in backend.requests)
        assert with_header["traceparent"] == CLIENT_TRACEPARENT
        assert with_header["tracestate"] == "vendor=abc"
        assert "traceparent" not in without
        assert "tracestate" not in without

    run(scenario())


def test_local_endpoints_make_no_span() -> None:
    async def scenario() -> None:
        async with OtlpReceiver() as receiver, FakeBackend(Mode.JSON) as backend:
            async with (
                RouterServer(traced(receiver, backend.url)) as router,
                aiohttp.ClientSession() as client,
            ):
                for path in ("/healthz", "/v1/models", "/metrics"):
                    async with client.get(router.url + path) as response:
                        assert response.status == 200
            assert receiver.posts == 0

    run(scenario())


def test_one_trace_covers_the_router_and_the_simulated_engine() -> None:
    async def scenario() -> None:
        async with OtlpReceiver() as receiver:
            engine_config = SimConfig(
                served_model_names=("llama",),
                profile=TimingProfile("tracing-test", 0.001, 0.0, 0.0005, 0.00002),
                replica_name="sim-0",
                otlp_traces_endpoint=receiver.url,
            )
            async with (
                SimServer(engine_config) as sim,
                RouterServer(traced(receiver, sim.url)) as router,
                aiohttp.ClientSession() as client,
            ):
                url = router.url + "/v1/chat/completions"
                headers = {"traceparent": CLIENT_TRACEPARENT}
                body = {**CHAT, "max_tokens": 4}
                async with client.post(url, json=body, headers=headers) as response:
                    assert response.status == 200
                    usage = (await response.json())["usage"]
            spans = {resource["service.name"]: span for resource, span in receiver.spans}
        assert len(receiver.spans) == 2
        router_span, engine_span = spans["llmservice-router"], spans["llmservice-sim"]
        assert engine_span.name == "llm_request"
        assert engine_span.trace_id == router_span.trace_id == bytes.fromhex(TRACE_ID)
        assert engine_span.parent_span_id == router_span.span_id
        assert router_span.parent_span_id.hex() == PARENT_ID
        engine = attributes(engine_span)
        assert engine["gen_ai.usage.completion_tokens"] == usage["completion_tokens"] == 4
        assert engine["gen_ai.usage.prompt_tokens"] == usage["prompt_tokens"]
        assert engine["gen_ai.response.model"] == "llama"

    run(scenario())
