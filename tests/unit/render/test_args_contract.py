"""What the renderer puts in the Pods is what the programs accept.

The router Deployment runs `llmservice router` with rendered args, and the simulator takes
the engine's vLLM args verbatim in the sandbox: a renamed flag must fail here, not at run time.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from llmservice.api import LLMService
from llmservice.api.validation import parse_llmservice
from llmservice.render import engine, router
from llmservice.router.cli import build_config, parser
from llmservice.sim.config import parse_args
from tests.unit.golden import EXAMPLES


def _service(example: Path) -> LLMService:
    return parse_llmservice(yaml.safe_load(example.read_text(encoding="utf-8")))


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.stem for e in EXAMPLES])
def test_rendered_router_args_parse(example: Path) -> None:
    service = _service(example)
    args = router.router_args(service)
    assert args[0] == "router"
    config = build_config(parser().parse_args(args[1:]))
    assert config.served_model_name == engine.served_name(service.spec.model)


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.stem for e in EXAMPLES])
def test_rendered_engine_args_start_the_simulator(example: Path) -> None:
    service = _service(example)
    parsed = parse_args(engine.engine_args(service))
    assert parsed.config.served_model_names[0] == engine.served_name(service.spec.model)
    assert parsed.config.max_num_seqs == service.spec.engine.max_num_seqs


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.stem for e in EXAMPLES])
def test_admission_reaches_the_router_and_priority_the_engine(example: Path) -> None:
    service = _service(example)
    config = build_config(parser().parse_args(router.router_args(service)[1:]))
    admission = service.spec.router.admission
    assert config.admission.max_in_flight_per_replica == (
        admission.max_in_flight_per_replica or service.spec.engine.max_num_seqs
    )
    assert config.admission.max_queued == admission.max_queued
    assert config.admission.queue_timeout == admission.queue_timeout_seconds
    keys = service.spec.router.api_keys_secret_ref is not None
    assert config.admission.engine_priority is keys
    parsed = parse_args(engine.engine_args(service))
    assert parsed.config.scheduling_policy == ("priority" if keys else "fcfs")
    assert not [flag for flag in parsed.ignored if "scheduling" in flag]


def test_every_admission_field_is_rendered() -> None:
    document = yaml.safe_load(EXAMPLES[0].read_text(encoding="utf-8"))
    document["spec"].setdefault("router", {})["admission"] = {
        "maxInFlightPerReplica": 3,
        "maxQueued": 7,
        "queueTimeoutSeconds": 12.5,
        "requestsPerMinute": 600,
        "minTokensPerSecondPerRequest": 15,
    }
    config = build_config(parser().parse_args(router.router_args(parse_llmservice(document))[1:]))
    assert config.admission.max_in_flight_per_replica == 3
    assert config.admission.max_queued == 7
    assert config.admission.queue_timeout == 12.5
    assert config.admission.requests_per_minute == 600
    assert config.admission.min_tokens_per_second_per_request == 15


def _traced(tracing: dict[str, object] | None) -> LLMService:
    document = yaml.safe_load(EXAMPLES[0].read_text(encoding="utf-8"))
    if tracing is not None:
        document["spec"].setdefault("monitoring", {})["tracing"] = tracing
    return parse_llmservice(document)


def test_tracing_reaches_the_router_and_the_engine() -> None:
    url = "http://otel-collector.monitoring:4318/v1/traces"
    service = _traced({"otlpEndpoint": url, "samplingRatio": 0.25})
    config = build_config(parser().parse_args(router.router_args(service)[1:]))
    assert config.tracing.otlp_endpoint == url
    assert config.tracing.sampling_ratio == 0.25
    args = engine.engine_args(service)
    assert args[args.index("--otlp-traces-endpoint") + 1] == url
    parsed = parse_args(args)
    assert parsed.config.otlp_traces_endpoint == url
    assert not parsed.ignored
    # vLLM's own default is gRPC; the endpoint is an OTLP/HTTP URL.
    (deployment,) = engine.render(service)
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "value": "http/protobuf"} in env


def test_without_an_endpoint_nothing_is_traced() -> None:
    for service in (_traced(None), _traced({"samplingRatio": 0.5})):
        router_args = router.router_args(service)
        assert "--otlp-traces-endpoint" not in router_args
        assert "--trace-sampling-ratio" not in router_args
        assert build_config(parser().parse_args(router_args[1:])).tracing.otlp_endpoint is None
        assert "--otlp-traces-endpoint" not in engine.engine_args(service)
        (deployment,) = engine.render(service)
        env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        assert not [e for e in env if e["name"].startswith("OTEL_")]


def _with_cors(cors: dict[str, object] | None) -> LLMService:
    document = yaml.safe_load(EXAMPLES[0].read_text(encoding="utf-8"))
    if cors is not None:
        document["spec"].setdefault("router", {})["cors"] = cors
    return parse_llmservice(document)


def test_cors_reaches_the_router() -> None:
    service = _with_cors(
        {
            "allowedOrigins": ["https://chat.example.com", "http://localhost:3000"],
            "allowedHeaders": ["Authorization", "Content-Type", "X-Conversation"],
            "maxAgeSeconds": 600,
        }
    )
    cors = build_config(parser().parse_args(router.router_args(service)[1:])).cors
    assert cors.allowed_origins == ("https://chat.example.com", "http://localhost:3000")
    assert cors.allowed_headers == ("Authorization", "Content-Type", "X-Conversation")
    assert cors.max_age == 600


def test_without_origins_cors_is_off_with_the_api_defaults() -> None:
    for service in (_with_cors(None), _with_cors({"allowedOrigins": []})):
        args = router.router_args(service)
        assert not [arg for arg in args if arg.startswith("--cors")]
        cors = build_config(parser().parse_args(args[1:])).cors
        assert not cors.enabled
        assert list(cors.allowed_headers) == service.spec.router.cors.allowed_headers
    wildcard = build_config(
        parser().parse_args(router.router_args(_with_cors({"allowedOrigins": ["*"]}))[1:])
    )
    assert wildcard.cors.allowed_origins == ("*",)
    assert wildcard.cors.max_age is None
