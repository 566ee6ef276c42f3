"""Generate the LLMService CustomResourceDefinition from the pydantic models.

The models are the source of truth; this module translates their JSON Schema into the
structural OpenAPI v3 dialect Kubernetes requires:
- `$ref`s are inlined and `Optional[X]` becomes plain `X` (absent means unset);
- numeric exclusive bounds become OpenAPI 3.0's boolean form;
- `propertyNames` and the key pattern of `patternProperties` (neither allowed in structural
  schemas) become a CEL rule on the map's keys, and the value schema `additionalProperties`;
- every string `pattern` of the spec becomes a CEL rule whose message says what is expected,
  with an example, because the API server words a `pattern` failure as the raw regular
  expression (the status, written by the operator only, keeps plain patterns);
- defaults of nested objects are written out in full, because the API server checks a
  default against the CEL rules as it stands;
- `title` and `additionalProperties: false` are dropped (unknown fields are pruned, and
  rejected by strict field validation).
The output is deterministic so the committed file can be compared byte for byte.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema
from pydantic_core import core_schema

from llmservice.api.resource import (
    GROUP,
    KIND,
    NAME_RULES,
    PLURAL,
    SHORT_NAME,
    SINGULAR,
    VERSION,
)
from llmservice.api.schema_types import CEL_RULES_KEY, PATTERN_EXPECTATIONS, cel, expectation
from llmservice.api.spec import LLMServiceSpec
from llmservice.api.status import LLMServiceStatus

CRD_NAME = f"{PLURAL}.{GROUP}"

PRINTER_COLUMNS: list[dict[str, Any]] = [
    {
        "name": "Ready",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
        "description": "Whether the service answers requests.",
    },
    {
        "name": "Model",
        "type": "string",
        "jsonPath": ".spec.model.name",
        "description": "Model served.",
    },
    {
        "name": "GPUs",
        "type": "integer",
        "jsonPath": ".spec.engine.gpus",
        "description": "GPUs per engine replica.",
    },
    {
        "name": "Replicas",
        "type": "string",
        "jsonPath": ".status.replicaSummary",
        "description": "Ready/desired engine replicas.",
    },
    {
        "name": "Tokens/s",
        "type": "number",
        "jsonPath": ".status.throughput.generationTokensPerSecond",
        "description": "Generated tokens per second, recently.",
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {
        "name": "Reason",
        "type": "string",
        "priority": 1,
        "jsonPath": '.status.conditions[?(@.type=="Ready")].reason',
        "description": "Why the service is or is not ready.",
    },
    {
        "name": "Endpoint",
        "type": "string",
        "priority": 1,
        "jsonPath": ".status.endpoint",
        "description": "OpenAI-compatible base URL.",
    },
]


# `kubectl scale`, a HorizontalPodAutoscaler or KEDA set engine.replicas; the status says
# how many replicas the engine has and which Pods they are.
SCALE_SUBRESOURCE = {
    "specReplicasPath": ".spec.engine.replicas",
    "statusReplicasPath": ".status.replicas",
    "labelSelectorPath": ".status.selector",
}


class _DefaultFactorySchema(GenerateJsonSchema):
    """Emit defaults that come from `default_factory` in full (pydantic may write `{}`)."""

    def get_default_value(self, schema: core_schema.WithDefaultSchema) -> Any:
        factory = schema.get("default_factory")
        if factory is None:
            return super().get_default_value(schema)
        value = factory()  # type: ignore[call-arg]
        # Nested objects default to their fully expanded value, not {}: the API server
        # checks a default against the CEL rules without applying the inner defaults.
        if isinstance(value, BaseModel):
            return value.model_dump(by_alias=True, exclude_none=True, mode="json")
        return value


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    """Inline `$ref`s, merging any sibling keys (description, default) over the target."""
    if isinstance(node, list):
        return [_resolve(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = copy.deepcopy(defs[node["$ref"].rsplit("/", 1)[-1]])
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        return _resolve({**target, **siblings}, defs)
    return {key: _resolve(value, defs) for key, value in node.items()}


def _cel_regex(pattern: str) -> str:
    """`pattern` as a CEL raw string literal (RE2 syntax, as the API server evaluates it)."""
    if "'" in pattern:
        raise ValueError(f"pattern {pattern!r} cannot be a CEL raw string")
    return f"r'{pattern}'"


def _key_rules(max_length: int | None, pattern: str | None) -> list[dict[str, str]]:
    rules = []
    if max_length is not None:
        rules.append(
            cel(
                f"self.all(k, k.size() <= {max_length})",
                f"keys must be at most {max_length} characters",
            )
        )
    if pattern is not None:
        rules.append(
            cel(
                f"self.all(k, k.matches({_cel_regex(pattern)}))",
                "keys must be " + expectation(pattern),
            )
        )
    return rules


def _pattern_rule(pattern: str) -> dict[str, str]:
    return cel(f"self.matches({_cel_regex(pattern)})", "must be " + expectation(pattern))


def _structural(node: Any) -> Any:
    """Rewrite one resolved JSON Schema node into the structural dialect (see module doc)."""
    if isinstance(node, list):
        return [_structural(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    any_of = node.get("anyOf")
    if isinstance(any_of, list) and not node.get("x-kubernetes-int-or-string"):
        non_null = [option for option in any_of if option.get("type") != "null"]
        if len(non_null) == 1:
            del node["anyOf"]
            node = {**non_null[0], **node}
    if node.get("default", 0) is None:
        del node["default"]
    node.pop("title", None)
    if node.get("additionalProperties") is False:
        del node["additionalProperties"]
    for bound, inclusive in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(node.get(bound), int | float) and not isinstance(node.get(bound), bool):
            node[inclusive] = node[bound]
            node[bound] = True
    pattern_properties = node.pop("patternProperties", None)
    key_pattern = None
    if pattern_properties:
        # Structural schemas have no patternProperties: the value schema becomes
        # additionalProperties and the key pattern a CEL rule.
        ((key_pattern, value_schema),) = pattern_properties.items()
        node["additionalProperties"] = value_schema
    property_names = node.pop("propertyNames", None) or {}
    key_rules = _key_rules(property_names.get("maxLength"), key_pattern)
    if key_rules:
        node[CEL_RULES_KEY] = [*node.get(CEL_RULES_KEY, []), *key_rules]
    if node.get("type") == "string" and node.get("pattern") in PATTERN_EXPECTATIONS:
        node[CEL_RULES_KEY] = [_pattern_rule(node.pop("pattern")), *node.get(CEL_RULES_KEY, [])]
    return {key: _structural(value) for key, value in node.items()}


def model_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The structural OpenAPI schema of one model."""
    raw = model.model_json_schema(by_alias=True, schema_generator=_DefaultFactorySchema)
    defs = raw.pop("$defs", {})
    result: dict[str, Any] = _structural(_resolve(raw, defs))
    return result


def openapi_schema() -> dict[str, Any]:
    """The whole `openAPIV3Schema` of the LLMService kind."""
    return {
        "type": "object",
        "description": "LLMService turns one model into a complete serving stack: vLLM engine"
        " replicas on GPUs, a session-affinity router, Services, Ingress and monitoring.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "API version of this object."},
            "kind": {"type": "string", "description": "Kind of this object."},
            # Declared so the name rules' fieldPath resolves; Kubernetes allows only name
            # and generateName here.
            "metadata": {"type": "object", "properties": {"name": {"type": "string"}}},
            "spec": model_schema(LLMServiceSpec),
            "status": model_schema(LLMServiceStatus),
        },
        CEL_RULES_KEY: [dict(rule) for rule in NAME_RULES],
    }


def build_crd() -> dict[str, Any]:
    """The CustomResourceDefinition object."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": CRD_NAME,
            "labels": {
                "app.kubernetes.io/name": "llmservice",
                "app.kubernetes.io/part-of": "llmservice",
            },
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": [SHORT_NAME],
                "categories": ["all", "llm"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}, "scale": SCALE_SUBRESOURCE},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {"openAPIV3Schema": openapi_schema()},
                }
            ],
        },
    }


def crd_yaml() -> str:
    """The CRD as the YAML committed in `crds/`."""
    header = "# Generated by `llmservice crd` from operator/llmservice/api; do not edit.\n"
    return header + yaml.safe_dump(build_crd(), sort_keys=False, width=100)
