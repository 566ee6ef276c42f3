"""Offline validation of an LLMService with the rules the API server applies, to the verdict.

The API server, in order: drops nulls of object fields (as if absent), decodes with strict
field validation (unknown fields, including a snake_case spelling of a camelCase field, are
errors), checks the structural schema without coercion (`"2"` is not an integer, `"true"`
not a boolean; an integer is a number), applies defaults, checks list types (no duplicate in
a set, unique keys in a map list), then evaluates the CEL rules. Here:
1. nulls of object fields are dropped the same way;
2. pydantic validates in strict mode by alias only; the CRD is derived from these models,
   so the schema is the same one. One leniency is copied: the API server takes a float
   without fraction (2.0) for an integer field, but a CEL rule that reads the field then
   fails ("expected int, got float64"), so such values are integers for the schema and
   unreadable for the rules; engine.replicas, which the scale subresource reads, must be
   an integer outright;
3. lists the CRD declares as sets or map lists are checked for duplicates;
4. the CRD's CEL rules are evaluated with cel-python on the defaulted object, node by node,
   exactly where the CRD attaches them, with the Kubernetes quantity library added.
Every problem comes back as a `FieldError` naming the field path, never as a traceback, and
a pattern failure says what is expected with an example, not the regular expression.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

import celpy
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.evaluation import CELEvalError
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from llmservice.api.cel_quantity import CEL_FUNCTIONS
from llmservice.api.resource import API_VERSION, KIND, LLMService
from llmservice.api.schema_types import CEL_RULES_KEY, PATTERN_EXPECTATIONS
from llmservice.api.status import LLMServiceStatus

Path = tuple[str | int, ...]
# How pydantic names the string branch of an int-or-string union in an error location.
_STRING_BRANCHES = ("str", "constrained-str")

# pydantic's words for a wrong JSON type, in the API server's terms.
_TYPE_MESSAGES = {
    "int_type": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "bool_type": "must be a boolean (true or false)",
    "string_type": "must be a string",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "list_type": "must be a list",
    "missing": "required",
    "extra_forbidden": "unknown field",
}


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


def _message(item: ErrorDetails) -> str:
    kind = item["type"]
    if kind == "string_pattern_mismatch":
        pattern = str(item.get("ctx", {}).get("pattern", ""))
        expected = PATTERN_EXPECTATIONS.get(pattern)
        return f"must be {expected}" if expected else "has an invalid format"
    if kind == "value_error":
        return str(item.get("ctx", {}).get("error", item["msg"]))
    return _TYPE_MESSAGES.get(kind, item["msg"])


def _pydantic_errors(error: ValidationError) -> list[FieldError]:
    errors = []
    for item in error.errors(include_url=False):
        value, branch = item.get("input"), item["loc"][-1]
        # An int-or-string value fails the other branch too: only its own branch speaks.
        if (branch == "int" and isinstance(value, str)) or (
            branch in _STRING_BRANCHES and type(value) is int
        ):
            continue
        # A union (int-or-string) reports one error per branch under its own name.
        location = tuple(p for p in item["loc"] if p not in ("int", *_STRING_BRANCHES))
        message = _message(item)
        if location[-1:] == ("[key]",):
            # A map key: name the map, as the API server's rule on the keys does.
            message = f"keys {message} (not {location[-2]!r})"
            location = location[:-2]
        errors.append(FieldError(_path(location), message))
    unique = list(dict.fromkeys(errors))
    # An int-or-string value of neither type: one message, not one per branch.
    either = {
        e.path
        for e in unique
        if e.message == "must be an integer" and FieldError(e.path, "must be a string") in unique
    }
    merged = [
        FieldError(e.path, "must be an integer or a string") if e.path in either else e
        for e in unique
    ]
    return list(dict.fromkeys(merged))


def without_nulls(value: Any) -> Any:
    """`value` with every null object field dropped, as the API server drops a null of a
    field that is not nullable before validating (none of the LLMService's fields is).
    Nulls inside lists stay: there they are values, and wrong ones."""
    if isinstance(value, Mapping):
        return {key: without_nulls(child) for key, child in value.items() if child is not None}
    if isinstance(value, list):
        return [without_nulls(item) for item in value]
    return value


def schema_nodes(
    schema: Mapping[str, Any], value: Any, path: Path = ()
) -> Iterator[tuple[Mapping[str, Any], Any, Path]]:
    """Every value inside `value` with the schema node that describes it, parents first.

    The one walk behind the checks below, so each of them says only what it checks.
    """
    yield schema, value, path
    if isinstance(value, Mapping):
        properties = schema.get("properties", {})
        for key, child in value.items():
            child_schema = properties.get(key) or schema.get("additionalProperties")
            if isinstance(child_schema, Mapping):
                yield from schema_nodes(child_schema, child, (*path, key))
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for index, item in enumerate(value):
            yield from schema_nodes(schema["items"], item, (*path, index))


def list_type_errors(schema: Mapping[str, Any], value: Any, path: Path) -> Iterator[FieldError]:
    """Duplicates in lists the CRD declares `x-kubernetes-list-type: set` or `map`."""
    for node, items, where in schema_nodes(schema, value, path):
        list_type = node.get("x-kubernetes-list-type")
        if not isinstance(items, list) or list_type not in ("set", "map"):
            continue
        keys = node.get("x-kubernetes-list-map-keys", [])
        seen: list[Any] = []
        for index, item in enumerate(items):
            if list_type == "map" and not isinstance(item, Mapping):
                continue
            identity = [item.get(k) for k in keys] if list_type == "map" else item
            if identity in seen:
                yield FieldError(_path((*where, index)), f"duplicate value {identity!r}")
            seen.append(identity)


class _UnreadableInteger:
    """A float the API server let through as an integer: any CEL operation on it fails,
    while `has()` sees it, as on the API server."""

    def _fail(self, *_args: object) -> Any:
        raise TypeError("invalid data, expected int, got float64")

    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = _fail
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _fail
    __mod__ = __rmod__ = __truediv__ = __rtruediv__ = __floordiv__ = __rfloordiv__ = _fail
    __neg__ = __int__ = __float__ = __bool__ = _fail
    __hash__ = object.__hash__


def _integral_floats(schema: Mapping[str, Any], value: Any) -> Iterator[Path]:
    """Paths of integer fields holding a float without fraction."""
    for node, number, path in schema_nodes(schema, value):
        if node.get("type") == "integer" and isinstance(number, float) and number.is_integer():
            yield path


def _get(document: Any, path: Path) -> Any:
    for part in path:
        document = document[part]
    return document


def _replace(document: Any, path: Path, value: Any) -> None:
    for part in path[:-1]:
        document = document[part]
    document[path[-1]] = value


def _to_cel(value: Any) -> Any:
    if isinstance(value, _UnreadableInteger):
        return value
    if isinstance(value, Mapping):
        return celtypes.MapType({celtypes.StringType(k): _to_cel(v) for k, v in value.items()})
    if isinstance(value, list):
        return celtypes.ListType([_to_cel(item) for item in value])
    return json_to_cel(value)


@cache
def _program(rule: str) -> celpy.Runner:
    environment = celpy.Environment()
    return environment.program(environment.compile(rule), functions=CEL_FUNCTIONS)


def _rule_holds(rule: str, value: Any) -> bool:
    result = _program(rule).evaluate({"self": _to_cel(value)})
    # An evaluation error fails the rule, as on the API server.
    return not isinstance(result, Exception) and bool(result)


def cel_errors(schema: Mapping[str, Any], value: Any) -> Iterator[FieldError]:
    """Evaluate every CEL rule of `schema` (recursively) against `value`.

    Transition rules (those reading `oldSelf`) only run on updates, so they are skipped here,
    as the API server skips them on create.
    """
    for node, current, path in schema_nodes(schema, value):
        for rule in node.get(CEL_RULES_KEY, []):
            if "oldSelf" in rule["rule"]:
                continue
            try:
                holds = _rule_holds(rule["rule"], current)
            except CELEvalError:
                holds = False
            if not holds:
                where = (_path(path) + rule.get("fieldPath", "")).lstrip(".")
                yield FieldError(where, rule["message"])


# The spec field the CRD's scale subresource reads (specReplicasPath, under .spec).
SCALE_REPLICAS_PATH: Path = ("engine", "replicas")


@cache
def _crd_schema() -> Mapping[str, Any]:
    from llmservice.api.crd import openapi_schema  # imported late: crd imports the models

    return openapi_schema()


def _status(document: Any) -> LLMServiceStatus | None:
    """The status as written by the operator; the API server ignores a status sent with a
    create, so a missing or unreadable one never makes the LLMService invalid."""
    if document is None:
        return None
    try:
        return LLMServiceStatus.model_validate(document)
    except ValidationError:
        return None


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
    body = without_nulls({key: value for key, value in document.items() if key != "status"})
    schema = _crd_schema()
    spec_schema = schema["properties"]["spec"]
    floats = list(_integral_floats(spec_schema, body.get("spec")))
    scaled = [path for path in floats if path == SCALE_REPLICAS_PATH]
    if scaled:
        # The scale subresource reads this field as an int64: the API server refuses 2.0.
        raise InvalidLLMService(
            [FieldError("spec.engine.replicas", "must be an integer, not a float (2, not 2.0)")]
        )
    for path in floats:
        _replace(body["spec"], path, int(_get(body["spec"], path)))
    try:
        service = LLMService.model_validate(body, strict=True, by_alias=True, by_name=False)
    except ValidationError as error:
        raise InvalidLLMService(_pydantic_errors(error)) from None
    errors = list(list_type_errors(spec_schema, body["spec"], ("spec",)))
    defaulted = {
        "metadata": {"name": service.metadata.name, "namespace": service.metadata.namespace},
        "spec": service.spec.model_dump(by_alias=True, exclude_none=True, mode="json"),
    }
    for path in floats:
        _replace(defaulted["spec"], path, _UnreadableInteger())
    errors += cel_errors(schema, defaulted)
    if errors:
        raise InvalidLLMService(errors)
    status = _status(document.get("status"))
    return service if status is None else service.model_copy(update={"status": status})
