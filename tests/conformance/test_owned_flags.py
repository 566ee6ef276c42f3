"""The flags `engine.extraArgs` may not repeat come from vLLM's parser, in every spelling.

`llmservice/api/vllm_flags.py` is generated from the parser (`make vllm-flags`) so the unit
tests and the CRD need no vLLM; here the same is derived again and must match, and every
spelling the parser resolves to an owned flag must be refused by the CRD's rule.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from llmservice.api.spec import DEFAULT_ENGINE_IMAGE, OWNED_ENGINE_FLAGS, owned_flag_regex
from llmservice.api.vllm_flags import OWNED_FLAG_SPELLINGS
from llmservice.render import engine
from llmservice.sandbox.versions import VllmLayout
from llmservice.vllm_release import VLLM_VERSION
from tests.conformance.owned_flags import derive, option_spellings
from tests.conformance.test_engine_args import SERVICES


@pytest.fixture(scope="module")
def derived(vllm: VllmLayout) -> dict[str, Any]:
    return derive(vllm)


def test_the_generated_file_is_what_the_parser_says(derived: dict[str, Any]) -> None:
    # One release everywhere: the installed engine, the generated file, the default image.
    assert derived["version"] == VLLM_VERSION
    assert DEFAULT_ENGINE_IMAGE.endswith(f":v{derived['version']}")
    assert option_spellings(derived) == OWNED_FLAG_SPELLINGS, "run `make vllm-flags`"


def spellings_with_values(spelling: str, options: list[str]) -> list[str]:
    """The extraArgs items that set a flag through `spelling`."""
    items = [spelling, f"{spelling}=1", f"{spelling} 1"]
    if re.fullmatch(r"-[A-Za-z]", spelling) and spelling in options:
        items.append(f"{spelling}1")  # a one-letter option takes its value glued on
    if spelling.startswith("--"):
        items.append(f"{spelling}.key")  # vLLM's JSON field syntax
    return items


def test_every_spelling_vllm_takes_for_an_owned_flag_is_refused(derived: dict[str, Any]) -> None:
    missed = []
    for flag, answer in derived["flags"].items():
        rule = re.compile(owned_flag_regex(flag))
        for spelling in answer["accepted"]:
            items = spellings_with_values(spelling, answer["option_strings"])
            missed += [i for i in items if not rule.match(i)]
    assert not missed


def test_no_other_flag_of_vllm_is_refused(derived: dict[str, Any]) -> None:
    rules = [re.compile(owned_flag_regex(flag)) for flag in OWNED_ENGINE_FLAGS]
    options = derived["other_options"]
    assert len(options) > 100  # the whole parser, not a part of it
    wrongly = [
        item
        for option in options
        for item in (option, f"{option}=1", f"--{option[2:].replace('-', '_')}")
        if option.startswith("--") or item == option
        if any(rule.match(item) for rule in rules)
    ]
    assert not wrongly


def test_the_parser_knows_every_owned_flag_and_the_spellings_are_many(
    derived: dict[str, Any],
) -> None:
    assert set(derived["flags"]) == set(OWNED_ENGINE_FLAGS)
    assert all(answer is not None for answer in derived["flags"].values())
    # Underscores and abbreviations are real: the refusal covers more than the option strings.
    accepted = derived["flags"]["max-model-len"]["accepted"]
    assert {"--max-model-len", "--max_model_len", "--max-model-l"} <= set(accepted)


def test_every_flag_the_operator_renders_is_owned() -> None:
    rendered: set[str] = set()
    for _, service in SERVICES:
        args = engine.engine_args(service)
        typed = args[: len(args) - len(service.spec.engine.extra_args or [])]
        rendered |= {a.removeprefix("--") for a in typed if a.startswith("--")}
    assert rendered <= set(OWNED_ENGINE_FLAGS)
