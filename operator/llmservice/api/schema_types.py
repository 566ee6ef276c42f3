"""Building blocks shared by the spec and status models.

`CamelModel` gives every model camelCase names in YAML and rejects unknown fields, the way a
structural CRD schema with strict field validation does. `cel()` attaches a CEL rule to a
model or field; the CRD generator copies it into `x-kubernetes-validations` and offline
validation evaluates the same text, so a rule exists in exactly one place.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema
from pydantic.alias_generators import to_camel

CEL_RULES_KEY = "x-kubernetes-validations"

# Kubernetes resource quantities ("500m", "16Gi", 2). Same regular expression as
# k8s.io/apimachinery's resource.Quantity, so what passes here parses on the API server.
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# Qualified names as used for label keys and extended resource names: "nvidia.com/gpu".
QUALIFIED_NAME_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
LABEL_VALUE_PATTERN = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
DURATION_PATTERN = r"^[0-9]+(ms|s|m|h)$"


class CamelModel(BaseModel):
    """Base of every API model: camelCase aliases, unknown fields rejected, frozen values."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        validate_default=True,
    )


def cel(rule: str, message: str, field_path: str | None = None) -> dict[str, str]:
    """One CEL validation rule as the CRD carries it (`x-kubernetes-validations` item)."""
    entry = {"rule": rule, "message": message}
    if field_path is not None:
        entry["fieldPath"] = field_path
    return entry


def cel_rules(*rules: dict[str, str]) -> dict[str, Any]:
    """`json_schema_extra` for a model or field that carries CEL rules."""
    return {CEL_RULES_KEY: list(rules)}


def _int_or_string_schema(pattern: str) -> dict[str, Any]:
    # The structural-schema form Kubernetes accepts for int-or-string values.
    return {
        "x-kubernetes-int-or-string": True,
        "anyOf": [{"type": "integer"}, {"type": "string"}],
        "pattern": pattern,
    }


def _check_quantity(value: int | str) -> int | str:
    if isinstance(value, str) and not re.fullmatch(QUANTITY_PATTERN, value):
        raise ValueError(
            f"should match the quantity pattern '{QUANTITY_PATTERN}' (e.g. 500m, 16Gi)"
        )
    return value


Quantity = Annotated[
    int | str,
    AfterValidator(_check_quantity),
    WithJsonSchema(_int_or_string_schema(QUANTITY_PATTERN)),
]
LabelMap = Annotated[
    dict[
        Annotated[str, Field(max_length=253, pattern=QUALIFIED_NAME_PATTERN)],
        Annotated[str, Field(max_length=63, pattern=LABEL_VALUE_PATTERN)],
    ],
    Field(max_length=32),
]
AnnotationMap = Annotated[
    dict[
        Annotated[str, Field(max_length=253, pattern=QUALIFIED_NAME_PATTERN)],
        Annotated[str, Field(max_length=4096)],
    ],
    Field(max_length=64),
]
