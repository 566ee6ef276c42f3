"""The admission rules that protect the children: owned flags in any spelling, the
operator's own environment variables, and messages that say what is expected."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from typing import Any

import pytest

from llmservice.api.crd import openapi_schema
from llmservice.api.schema_types import PATTERN_EXPECTATIONS
from llmservice.api.spec import OPERATOR_ENGINE_ENV, OWNED_ENGINE_FLAGS, owned_flag_regex
from llmservice.api.validation import InvalidLLMService, parse_llmservice
from llmservice.api.vllm_flags import OWNED_FLAG_SPELLINGS
from llmservice.render import render_all
from tests.unit.api.fixtures import INVALID_CASES, MINIMAL, deep_merge


def with_extra_args(*args: str) -> dict[str, Any]:
    return deep_merge(MINIMAL, {"spec": {"engine": {"extraArgs": list(args)}}})


def spellings(flag: str) -> Iterator[tuple[str, ...]]:
    underscored = flag.replace("-", "_")
    yield (f"--{flag}", "1")
    yield (f"--{flag}=1",)
    yield (f"--{flag} 1",)
    yield (f"--{underscored}", "1")
    yield (f"--{underscored}=1",)
    yield (f"--{flag[:-1]}", "1")  # an abbreviation argparse accepts
    yield (f"--{underscored[:3]}=1",)
    yield (f"--{flag}.key", "1")  # vLLM's JSON field syntax
    for option, shortest in OWNED_FLAG_SPELLINGS[flag]:  # aliases, and their abbreviations
        yield (option, "1")
        yield (f"{option}=1",)
        yield (shortest, "1")


CASES = [(flag, args) for flag in OWNED_ENGINE_FLAGS for args in spellings(flag)]


@pytest.mark.parametrize(("flag", "args"), CASES, ids=[" ".join(a) for _, a in CASES])
def test_owned_flag_is_refused_in_any_spelling(flag: str, args: tuple[str, ...]) -> None:
    with pytest.raises(InvalidLLMService) as raised:
        parse_llmservice(with_extra_args(*args))
    messages = [e.message for e in raised.value.errors if e.path == "spec.engine.extraArgs"]
    assert any(f"--{flag} in any spelling" in m for m in messages), messages
    assert any(OWNED_ENGINE_FLAGS[flag] in m for m in messages), messages


@pytest.mark.parametrize(
    "arg",
    [
        "--model-impl=transformers",
        "--model-loader-extra-config={}",
        "--quantization-param-path=/q.json",
        "--tokenizer-revision=main",
        "--code-revision=main",
        "--max-num-batched-tokens=8192",
        "--max-logprobs=5",
        "--hf-token",
        "--hf-config-path=/c",
        "--data-parallel-size=2",
        "-dp",
        "-O3",
        "--port-not-a-flag",
        "value with --port inside",
    ],
)
def test_flags_that_only_look_owned_are_allowed(arg: str) -> None:
    parse_llmservice(with_extra_args(arg))


def test_reserved_env_names_are_exactly_those_the_operator_sets() -> None:
    # Every feature that adds an engine variable on: storage (HF_HOME), a token (HF_TOKEN)
    # and traces (OTEL_EXPORTER_OTLP_TRACES_PROTOCOL).
    document = deep_merge(
        MINIMAL,
        {
            "spec": {
                "model": {"hfTokenSecretRef": {"name": "hf"}},
                "storage": {"enabled": True},
                "monitoring": {"tracing": {"otlpEndpoint": "http://collector:4318/v1/traces"}},
            }
        },
    )
    deployment = next(
        o
        for o in render_all(parse_llmservice(document))
        if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-engine")
    )
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert {variable["name"] for variable in container["env"]} == set(OPERATOR_ENGINE_ENV)


@pytest.mark.parametrize("name", OPERATOR_ENGINE_ENV)
def test_each_operator_env_name_is_refused(name: str) -> None:
    document = deep_merge(MINIMAL, {"spec": {"engine": {"env": [{"name": name, "value": "x"}]}}})
    with pytest.raises(InvalidLLMService, match=f"spec.engine.env: .*{name}"):
        parse_llmservice(document)


def spec_nodes(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from spec_nodes(value)
    elif isinstance(node, list):
        for item in node:
            yield from spec_nodes(item)


def test_spec_schema_has_no_raw_pattern() -> None:
    # The API server would print a raw regular expression for an OpenAPI pattern.
    spec = openapi_schema()["properties"]["spec"]
    assert [n["pattern"] for n in spec_nodes(spec) if "pattern" in n] == []


REGEX_SYNTAX = re.compile(r"\^|\$\)?$|\[a-z|\(\?|\\\.|\]\*")


@pytest.mark.parametrize("case", INVALID_CASES, ids=[c["name"] for c in INVALID_CASES])
def test_messages_never_print_a_regular_expression(case: dict[str, Any]) -> None:
    with pytest.raises(InvalidLLMService) as raised:
        parse_llmservice(copy.deepcopy(case["document"]))
    for error in raised.value.errors:
        assert not REGEX_SYNTAX.search(error.message), str(error)


def test_rule_messages_never_print_a_regular_expression() -> None:
    spec = openapi_schema()["properties"]["spec"]
    messages = [
        rule["message"] for n in spec_nodes(spec) for rule in n.get("x-kubernetes-validations", [])
    ]
    assert messages
    assert [m for m in messages if REGEX_SYNTAX.search(m)] == []


def test_snake_case_spelling_is_an_unknown_field() -> None:
    document = deep_merge(MINIMAL, {"spec": {"engine": {"max_num_seqs": 8}}})
    with pytest.raises(InvalidLLMService, match=r"spec\.engine\.max_num_seqs: unknown field"):
        parse_llmservice(document)


def test_null_is_absent_as_on_the_api_server() -> None:
    document = deep_merge(MINIMAL, {"spec": {"engine": {"gpus": 2}}})
    document["spec"]["engine"]["replicas"] = None
    document["spec"]["router"] = None
    service = parse_llmservice(document)
    assert service.spec.engine.replicas == 1
    assert service.spec.router.replicas == 2


def test_null_required_field_is_missing() -> None:
    document = copy.deepcopy(MINIMAL)
    document["spec"]["model"]["name"] = None
    with pytest.raises(InvalidLLMService, match=r"spec\.model\.name: required"):
        parse_llmservice(document)


def test_null_list_item_is_refused() -> None:
    document = deep_merge(MINIMAL, {"spec": {"model": {"aliases": ["a", None]}}})
    with pytest.raises(InvalidLLMService, match=r"spec\.model\.aliases\[1\]: must be a string"):
        parse_llmservice(document)


def test_integral_float_is_an_integer() -> None:
    document = deep_merge(MINIMAL, {"spec": {"engine": {"maxNumSeqs": 128.0}}})
    assert parse_llmservice(document).spec.engine.max_num_seqs == 128


def test_integral_float_is_refused_where_the_scale_subresource_reads() -> None:
    document = deep_merge(MINIMAL, {"spec": {"engine": {"replicas": 3.0}}})
    with pytest.raises(InvalidLLMService, match=r"spec\.engine\.replicas: must be an integer"):
        parse_llmservice(document)


def test_status_is_not_judged() -> None:
    # The API server ignores a status sent with a create.
    document = dict(copy.deepcopy(MINIMAL), status={"conditions": "not a list"})
    assert parse_llmservice(document).status is None


def test_every_format_is_worded_with_an_example() -> None:
    assert PATTERN_EXPECTATIONS
    for pattern, expected in PATTERN_EXPECTATIONS.items():
        assert " such as " in expected, pattern


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (True, "must be an integer or a string"),
        (1.5, "must be an integer or a string"),
        ("x" * 65, "at most 64 characters"),
        ("16GB", "must be a quantity such as 500m, 2 or 16Gi"),
    ],
)
def test_int_or_string_quantity_has_one_message(value: Any, message: str) -> None:
    document = deep_merge(MINIMAL, {"spec": {"engine": {"resources": {"limits": {"cpu": value}}}}})
    with pytest.raises(InvalidLLMService) as raised:
        parse_llmservice(document)
    (error,) = raised.value.errors
    assert error.path == "spec.engine.resources.limits.cpu"
    assert message in error.message


def test_a_newly_owned_flag_is_refused_before_the_spellings_are_regenerated() -> None:
    rule = re.compile(owned_flag_regex("not-yet-derived"))
    assert rule.match("--not-yet-derived=1")
    assert rule.match("--not_yet")
    assert not rule.match("--n")
    assert not rule.match("--not-yet-derived-other")
