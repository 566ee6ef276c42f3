"""The engine args the operator renders parse in vLLM's own parser, to the values of the spec.

Every example, the minimal one with each dtype and quantization the schema offers, and a
deterministic set of generated specs (the property tests' generator) are rendered, and
all their args go to the installed vLLM in one batch (see `vllm_probe`).
"""

from __future__ import annotations

import copy
from typing import Any, get_args

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings

from llmservice.api import LLMService
from llmservice.api.spec import DType, Quantization
from llmservice.api.validation import InvalidLLMService, parse_llmservice
from llmservice.render import engine
from llmservice.sandbox.versions import VllmLayout
from tests.conformance.probe import ask
from tests.unit.golden import EXAMPLES
from tests.unit.render.test_properties import llmservices

GENERATED = 40


def generated_services(count: int) -> list[LLMService]:
    """`count` specs drawn by the property tests' generator, the same ones on every run."""
    found: list[LLMService] = []

    @settings(
        max_examples=count,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(llmservices())
    def collect(document: dict[str, Any]) -> None:
        try:
            found.append(parse_llmservice(document))
        except InvalidLLMService:
            assume(False)

    collect()
    return found


def example_services() -> list[tuple[str, LLMService]]:
    services = []
    for path in EXAMPLES:
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if document:
                services.append((path.stem, parse_llmservice(document)))
    return services


def choice_services() -> list[tuple[str, LLMService]]:
    """The minimal example with each dtype and each quantization the schema offers."""
    minimal = yaml.safe_load((EXAMPLES[0].parent / "minimal.yaml").read_text(encoding="utf-8"))
    services = []
    for field, values in (("dtype", get_args(DType)), ("quantization", get_args(Quantization))):
        for value in values:
            document = copy.deepcopy(minimal)
            document["spec"]["model"][field] = value
            services.append((f"{field}-{value}", parse_llmservice(document)))
    return services


SERVICES = [
    *example_services(),
    *choice_services(),
    *((f"generated-{i}", s) for i, s in enumerate(generated_services(GENERATED))),
]


@pytest.fixture(scope="module")
def parsed(vllm: VllmLayout) -> dict[str, dict[str, Any]]:
    """Each service's rendered args as vLLM parsed them, in one probe run."""
    answers = ask(vllm, "parse", [engine.engine_args(s) for _, s in SERVICES])
    return {name: answer for (name, _), answer in zip(SERVICES, answers, strict=True)}


def expected_values(service: LLMService) -> dict[str, Any]:
    """What vLLM must have parsed, field by field, from the spec alone."""
    model, spec_engine = service.spec.model, service.spec.engine
    tensor = engine.tensor_parallel_size(service)
    return {
        "model": engine.model_argument(model),
        "served_model_name": [engine.served_name(model), *(model.aliases or [])],
        "dtype": model.dtype,
        "quantization": None if model.quantization == "none" else model.quantization,
        "max_model_len": model.max_model_len,
        "revision": model.revision,
        "gpu_memory_utilization": spec_engine.gpu_memory_utilization,
        "max_num_seqs": spec_engine.max_num_seqs,
        "tensor_parallel_size": tensor,
        "pipeline_parallel_size": spec_engine.gpus // tensor,
        "hf_overrides": engine.hf_overrides(model) or {},
        "host": "0.0.0.0",  # noqa: S104 - the Pod's every address
        "port": 8000,
    }


def test_generator_gave_varied_specs() -> None:
    generated = [s for name, s in SERVICES if name.startswith("generated-")]
    assert len(generated) == GENERATED
    assert any(s.spec.model.rope_scaling for s in generated)
    assert any(s.spec.model.quantization != "none" for s in generated)
    assert any(s.spec.engine.gpus // engine.tensor_parallel_size(s) > 1 for s in generated)


@pytest.mark.parametrize(("name", "service"), SERVICES, ids=[name for name, _ in SERVICES])
def test_rendered_args_parse_to_the_spec(
    parsed: dict[str, dict[str, Any]], name: str, service: LLMService
) -> None:
    answer = parsed[name]
    assert answer["ok"], f"vLLM refused {engine.engine_args(service)}: {answer['error']}"
    got = {key: answer["values"].get(key) for key in expected_values(service)}
    assert got == expected_values(service)
