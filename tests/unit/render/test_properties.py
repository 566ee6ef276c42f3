"""Property tests: any valid LLMService renders valid objects with fitting names.

Specs are drawn from the schema's own ranges; the ones the CRD's rules reject are discarded
(`assume`), so what is tested is exactly "accepted by the API => renders correctly".
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from llmservice.api import LLMService
from llmservice.api.validation import InvalidLLMService, parse_llmservice
from llmservice.render import render_all
from tests.unit.render.schemas import validate_object

MAX_NAME = 56
names = st.from_regex(r"\A[a-z]([-a-z0-9]{0,54}[a-z0-9])?\Z")
namespaces = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")
model_names = st.sampled_from(
    ["gpt2", "Qwen/Qwen2.5-7B-Instruct", "meta-llama/Llama-3.1-8B", "pvc://weights/llama/8b"]
)


@st.composite
def llmservices(draw: st.DrawFn) -> dict[str, Any]:
    gpus = draw(st.integers(1, 16))
    replicas = draw(st.integers(0, 64))
    engine: dict[str, Any] = {"gpus": gpus, "replicas": replicas}
    if draw(st.booleans()):
        engine["tensorParallelSize"] = draw(
            st.sampled_from([d for d in range(1, gpus + 1) if gpus % d == 0])
        )
    engine["spreadAcrossNodes"] = draw(st.sampled_from(["Preferred", "Required", "None"]))
    model: dict[str, Any] = {"name": draw(model_names)}
    model["quantization"] = draw(st.sampled_from(["none", "awq", "gptq", "fp8"]))
    if draw(st.booleans()):
        factor = draw(st.floats(1.1, 8.0))
        original = draw(st.integers(2048, 131072))
        model["ropeScaling"] = {
            "type": "yarn",
            "factor": factor,
            "originalMaxPositionEmbeddings": original,
        }
        model["maxModelLen"] = draw(st.integers(128, int(original * factor)))
    storage: dict[str, Any] = {"enabled": draw(st.booleans())}
    storage["accessModes"] = draw(st.sampled_from([["ReadWriteOnce"], ["ReadWriteMany"]]))
    spec = {
        "model": model,
        "engine": engine,
        "storage": storage,
        "router": {"replicas": draw(st.integers(1, 32))},
        "ingress": {"enabled": draw(st.booleans()), "host": "chat.example.com"},
        "monitoring": {"serviceMonitor": draw(st.booleans())},
    }
    return {
        "apiVersion": "serving.llmservice.dev/v1alpha1",
        "kind": "LLMService",
        "metadata": {"name": draw(names), "namespace": draw(namespaces), "uid": "0f1e2d3c"},
        "spec": spec,
    }


def _parse_or_discard(document: dict[str, Any]) -> LLMService:
    try:
        return parse_llmservice(document)
    except InvalidLLMService:
        assume(False)
        raise


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(llmservices())
def test_any_valid_spec_renders_valid_objects(document: dict[str, Any]) -> None:
    service = _parse_or_discard(document)
    objects = render_all(service)
    for obj in objects:
        validate_object(obj)
        assert len(obj["metadata"]["name"]) <= 63
        for value in obj["metadata"]["labels"].values():
            assert len(value) <= 63
        assert obj["metadata"]["ownerReferences"][0]["uid"] == "0f1e2d3c"


@settings(max_examples=100, deadline=None)
@given(llmservices())
def test_engine_gpu_limit_equals_requested_gpus(document: dict[str, Any]) -> None:
    service = _parse_or_discard(document)
    (engine,) = [
        obj
        for obj in render_all(service)
        if obj["kind"] == "Deployment" and obj["metadata"]["name"].endswith("-engine")
    ]
    container = engine["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == service.spec.engine.gpus
    args = container["args"]
    tensor = int(args[args.index("--tensor-parallel-size") + 1])
    pipeline = (
        int(args[args.index("--pipeline-parallel-size") + 1])
        if "--pipeline-parallel-size" in args
        else 1
    )
    assert tensor * pipeline == service.spec.engine.gpus


def test_longest_name_fits() -> None:
    document = {
        "apiVersion": "serving.llmservice.dev/v1alpha1",
        "kind": "LLMService",
        "metadata": {"name": "a" * MAX_NAME},
        "spec": {"model": {"name": "gpt2"}, "storage": {"enabled": True}},
    }
    names_ = [obj["metadata"]["name"] for obj in render_all(parse_llmservice(document))]
    assert max(len(name) for name in names_) == 63
