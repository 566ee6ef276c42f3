"""One OpenTelemetry span per proxied request, exported over OTLP/HTTP.

The span is a ``SERVER`` span named after the route (``POST /v1/chat/completions``). Its
parent is the client's W3C ``traceparent`` (with its ``tracestate``) when the client sent
one, else it starts a new trace. The request sent to the engine carries a ``traceparent``
naming the router's span, so the engine's own spans (vLLM's ``--otlp-traces-endpoint``)
join the same trace.

Attributes, all known once the request is over:

====================================  =================================================
``http.request.method``, ``http.route``, ``http.response.status_code``
``gen_ai.request.model``              the model the client asked for (before aliases)
``llmservice.request_id``             the ``X-Request-ID`` the router used
``llmservice.client``                 the API key's name (``anonymous`` without keys),
                                      never the key
``llmservice.replica``                the replica of the last attempt
``llmservice.routing.key``            ``session``, ``prefix`` or ``none``, as in the
                                      access log's ``key``
``llmservice.routing.primary``        true when the session stayed on its replica (an
                                      affinity hit) or a new one went to its ring point,
                                      false when it moved or was placed past it; absent
                                      for ``none``
``llmservice.attempts``               attempts made (retries + 1)
``llmservice.queue_wait_seconds``     time spent in the router's queue for a slot
``error.type``                        the router's error cause, when there is one
====================================  =================================================

Spans go through a `BatchSpanProcessor`: the request path only appends the finished span
to a queue, and a background thread exports batches. `Tracing.shutdown` flushes it.
Sampling is ``ParentBased(TraceIdRatioBased(ratio))``: a client's sampled flag decides for
its trace, the ratio decides for new traces. This module is imported only when tracing is
configured, so a router without it loads no OpenTelemetry code.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import NonRecordingSpan, Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation import set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from llmservice.router.proxy import Exchange

__all__ = ["SERVICE_NAME", "TRACE_HEADERS", "Tracing"]

SERVICE_NAME = "llmservice-router"
TRACE_HEADERS = frozenset({b"traceparent", b"tracestate"})


class Tracing:
    """The router's tracer: starts, propagates and ends the span of each proxied request."""

    def __init__(
        self,
        endpoint: str,
        sampling_ratio: float = 1.0,
        *,
        exporter: SpanExporter | None = None,
    ) -> None:
        self.provider = TracerProvider(
            resource=Resource.create({"service.name": SERVICE_NAME}),
            sampler=ParentBased(TraceIdRatioBased(sampling_ratio)),
        )
        self.provider.add_span_processor(
            BatchSpanProcessor(exporter or OTLPSpanExporter(endpoint=endpoint))
        )
        self.tracer = self.provider.get_tracer("llmservice.router")
        self._propagator = TraceContextTextMapPropagator()

    def start(self, headers: Iterable[tuple[bytes, bytes]], route: str) -> Span:
        """The request's span, child of the client's ``traceparent`` when it sent one."""
        carrier: dict[str, str] = {}
        for name, value in headers:
            if name in TRACE_HEADERS:
                carrier[name.decode()] = bytes(value).decode("latin-1")
        parent: Context | None = self._propagator.extract(carrier) if carrier else None
        return self.tracer.start_span(f"POST {route}", context=parent, kind=SpanKind.SERVER)

    def upstream_lines(self, span: Span) -> list[bytes]:
        """``traceparent`` (and ``tracestate``) header lines naming ``span`` as the parent."""
        carrier: dict[str, str] = {}
        self._propagator.inject(carrier, context=set_span_in_context(span))
        return [f"{name}: {value}".encode("latin-1") for name, value in carrier.items()]

    def end(self, span: Span, exchange: Exchange, method: str) -> None:
        """Set the request's attributes on its span and end it (a no-op when unsampled)."""
        if isinstance(span, NonRecordingSpan):
            return
        status = exchange.status
        span.set_attributes(
            {
                "http.request.method": method,
                "http.route": exchange.route,
                "http.response.status_code": status,
                "llmservice.request_id": exchange.request_id,
                "llmservice.client": exchange.client.name,
                "llmservice.routing.key": exchange.key_kind,
                "llmservice.attempts": exchange.attempts,
                "llmservice.queue_wait_seconds": exchange.queue_wait,
            }
        )
        if exchange.model:
            span.set_attribute("gen_ai.request.model", exchange.model)
        if exchange.replica is not None:
            span.set_attribute("llmservice.replica", exchange.replica)
        if exchange.key_kind != "none" and exchange.attempts:
            span.set_attribute("llmservice.routing.primary", exchange.primary)
        if exchange.cause is not None:
            span.set_attribute("error.type", exchange.cause)
        if status >= 500:  # a server span's error: 4xx is the client's (OTel HTTP semconv)
            span.set_status(Status(StatusCode.ERROR, exchange.cause))
        span.end()

    def shutdown(self) -> None:
        """Export the spans still queued, then stop the exporter thread (blocks)."""
        self.provider.shutdown()
