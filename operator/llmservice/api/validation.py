"""Offline validation of an LLMService with the same rules the API server applies.

Two layers, in the order the API server applies them:
1. the structural schema (types, enums, ranges, lengths, patterns, unknown fields), which the
   CRD derives from the pydantic models, so pydantic enforces exactly it;
2. the CEL rules the CRD carries, evaluated here with cel-python on the defaulted object,
   node by node, exactly where the CRD attaches them.
Every problem comes back as a `FieldError` naming the field path, never as a traceback.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

import celpy
from celpy.adapter import json_to_cel
from pydantic import ValidationError

from llmservice.api.resource import API_VERSION, KIND, LLMService
from llmservice.api.schema_types import CEL_RULES_KEY


@dataclass(frozen=True)
class FieldError:
    """One problem with one field, e.g. `spec.engine.gpus: must be at most 16`."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class InvalidLLMService(ValueError):
    """The document is not a valid LLMService; `errors` lists every problem found."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(error) for error in errors))


def _path(location: tuple[int | str, ...]) -> str:
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _pydantic_errors(error: ValidationError) -> list[FieldError]:
    errors = []
    for item in error.errors(include_url=False):
        message = "unknown field" if item["type"] == "extra_forbidden" else item["msg"]
        errors.append(FieldError(_path(item["loc"]), message))
    return errors


@cache
def _program(rule: str) -> celpy.Runner:
    environment = celpy.Environment()
    return environment.program(environment.compile(rule))


def _rule_holds(rule: str, value: Any) -> bool:
    result = _program(rule).evaluate({"self": json_to_cel(value)})
    if isinstance(result, Exception):
        raise result
    return bool(result)


def cel_errors(schema: Mapping[str, Any], value: Any, path: str = "") -> Iterator[FieldError]:
    """Evaluate every CEL rule of `schema` (recursively) against `value`.

    Transition rules (those reading `oldSelf`) only run on updates, so they are skipped here,
    as the API server skips them on create.
    """
    for rule in schema.get(CEL_RULES_KEY, []):
        if "oldSelf" in rule["rule"]:
            continue
        if not _rule_holds(rule["rule"], value):
            yield FieldError((path + rule.get("fieldPath", "")).lstrip("."), rule["message"])
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for key, child in value.items():
            child_schema = properties.get(key) or schema.get("additionalProperties")
            if isinstance(child_schema, Mapping):
                yield from cel_errors(child_schema, child, f"{path}.{key}")
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for index, item in enumerate(value):
            yield from cel_errors(schema["items"], item, f"{path}[{index}]")


@cache
def _crd_schema() -> Mapping[str, Any]:
    from llmservice.api.crd import openapi_schema  # imported late: crd imports the models

    return openapi_schema()


def parse_llmservice(document: Any) -> LLMService:
    """Validate one parsed YAML document; return the model or raise `InvalidLLMService`."""
    if not isinstance(document, Mapping):
        raise InvalidLLMService([FieldError("", "expected a YAML mapping (an LLMService object)")])
    kind_errors = []
    if document.get("apiVersion") != API_VERSION:
        kind_errors.append(FieldError("apiVersion", f"must be {API_VERSION}"))
    if document.get("kind") != KIND:
        kind_errors.append(FieldError("kind", f"must be {KIND}, got {document.get('kind')!r}"))
    if kind_errors:
        raise InvalidLLMService(kind_errors)
    try:
        service = LLMService.model_validate(document)
    except ValidationError as error:
        raise InvalidLLMService(_pydantic_errors(error)) from None
    defaulted = {
        "metadata": {"name": service.metadata.name, "namespace": service.metadata.namespace},
        "spec": service.spec.model_dump(by_alias=True, exclude_none=True, mode="json"),
    }
    errors = list(cel_errors(_crd_schema(), defaulted))
    if errors:
        raise InvalidLLMService(errors)
    return service
