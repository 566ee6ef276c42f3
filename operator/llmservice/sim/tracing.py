"""The simulator's ``llm_request`` span, as vLLM exports with ``--otlp-traces-endpoint``.

vLLM ends one span per request, named ``llm_request``, whose parent is the ``traceparent``
the request came with; the simulator does the same so that a trace through the router
reaches an engine in tests and on the sandbox. It exports over OTLP/HTTP only (the operator
tells vLLM to as well, with ``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=http/protobuf``) and sets a
few of vLLM's ``gen_ai`` attributes: the request id, the model, token counts and the time
in the queue. Imported only when the flag is given.
"""

from __future__ import annotations

from collections.abc import Iterable

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = ["SERVICE_NAME", "EngineTracing"]

SERVICE_NAME = "llmservice-sim"
_TRACE_HEADERS = frozenset({b"traceparent", b"tracestate"})


class EngineTracing:
    """Starts and ends the ``llm_request`` span of each completion request."""

    def __init__(self, endpoint: str) -> None:
        self.provider = TracerProvider(resource=Resource.create({"service.name": SERVICE_NAME}))
        self.provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
        self.tracer = self.provider.get_tracer("llmservice.sim")
        self._propagator = TraceContextTextMapPropagator()

    def start(self, headers: Iterable[tuple[bytes, bytes]]) -> Span:
        carrier = {
            name.decode(): bytes(value).decode("latin-1")
            for name, value in headers
            if name in _TRACE_HEADERS
        }
        parent = self._propagator.extract(carrier) if carrier else None
        return self.tracer.start_span("llm_request", context=parent, kind=SpanKind.SERVER)

    def end(
        self,
        span: Span,
        *,
        request_id: str,
        model: str,
        prompt_tokens: int,
        completion_tokens: int,
        queued_seconds: float,
    ) -> None:
        span.set_attributes(
            {
                "gen_ai.request.id": request_id,
                "gen_ai.response.model": model,
                "gen_ai.usage.prompt_tokens": prompt_tokens,
                "gen_ai.usage.completion_tokens": completion_tokens,
                "gen_ai.latency.time_in_queue": queued_seconds,
            }
        )
        span.end()

    def shutdown(self) -> None:
        """Export the spans still queued (blocks)."""
        self.provider.shutdown()
