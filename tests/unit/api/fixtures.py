"""Table-driven LLMService fixtures shared by the offline tests and the e2e tests."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).parent

MINIMAL: dict[str, Any] = {
    "apiVersion": "serving.llmservice.dev/v1alpha1",
    "kind": "LLMService",
    "metadata": {"name": "chat", "namespace": "default"},
    "spec": {"model": {"name": "Qwen/Qwen2.5-0.5B-Instruct"}},
}


def deep_merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """`patch` merged into a copy of `base`; a None value deletes the key."""
    merged = copy.deepcopy(base)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load_cases(file_name: str) -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = yaml.safe_load((HERE / file_name).read_text(encoding="utf-8"))
    for case in cases:
        case["document"] = deep_merge(MINIMAL, case["patch"])
    return cases


INVALID_CASES = load_cases("invalid_specs.yaml")
VALID_CASES = load_cases("valid_specs.yaml")
