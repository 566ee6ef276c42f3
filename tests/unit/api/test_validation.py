"""Offline validation applies the CRD's own rules and names the offending field."""

from __future__ import annotations

from typing import Any

import pytest

from llmservice.api.validation import InvalidLLMService, parse_llmservice
from tests.unit.api.fixtures import INVALID_CASES, VALID_CASES


def test_tables_are_large_enough() -> None:
    assert len(INVALID_CASES) >= 30
    assert len(VALID_CASES) >= 10


@pytest.mark.parametrize("case", INVALID_CASES, ids=[c["name"] for c in INVALID_CASES])
def test_invalid_spec_is_rejected_naming_the_field(case: dict[str, Any]) -> None:
    with pytest.raises(InvalidLLMService) as raised:
        parse_llmservice(case["document"])
    matching = [
        error
        for error in raised.value.errors
        if error.path == case["path"] and case["message"].lower() in error.message.lower()
    ]
    assert matching, f"expected {case['path']}: ...{case['message']}... in:\n{raised.value}"


@pytest.mark.parametrize("case", VALID_CASES, ids=[c["name"] for c in VALID_CASES])
def test_valid_spec_is_accepted(case: dict[str, Any]) -> None:
    service = parse_llmservice(case["document"])
    assert service.name == case["document"]["metadata"]["name"]


def test_every_error_is_reported_at_once() -> None:
    document = {
        **INVALID_CASES[0]["document"],
        "spec": {"model": {"name": "m"}, "engine": {"gpus": 0, "replicas": -1}},
    }
    with pytest.raises(InvalidLLMService) as raised:
        parse_llmservice(document)
    paths = {error.path for error in raised.value.errors}
    assert {"spec.engine.gpus", "spec.engine.replicas"} <= paths


def test_non_mapping_document_is_rejected_with_a_message() -> None:
    with pytest.raises(InvalidLLMService, match="expected a YAML mapping"):
        parse_llmservice(["not", "an", "object"])


def test_defaults_are_applied() -> None:
    service = parse_llmservice(VALID_CASES[0]["document"])
    assert service.spec.engine.gpus == 1
    assert service.spec.router.session_header == "X-Session-ID"
    assert service.spec.storage.access_modes == ["ReadWriteOnce"]
