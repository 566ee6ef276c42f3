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

from llmservice.api.quantity import is_quantity

CEL_RULES_KEY = "x-kubernetes-validations"

# What each pattern expects, in words and with an example. Errors say this instead of
# printing the regular expression, offline and on the API server: the CRD generator turns
# every pattern into a CEL rule with this message (OpenAPI `pattern` errors cannot be
# worded), and offline validation looks the message up for pydantic's pattern errors.
PATTERN_EXPECTATIONS: dict[str, str] = {}


def described(pattern: str, expected: str) -> str:
    """Register what `pattern` expects ("a quantity such as 16Gi"); return the pattern."""
    PATTERN_EXPECTATIONS[pattern] = expected
    return pattern


def expectation(pattern: str) -> str:
    """The words for `pattern`; every pattern of the API is registered (a test checks)."""
    return PATTERN_EXPECTATIONS[pattern]


# Kubernetes resource quantities ("500m", "16Gi", 2): apimachinery's documented form. The
# CRD also requires `isQuantity`, the API server's own parser, which refuses a few strings
# this expression allows (a decimal exponent such as 1e1.5).
QUANTITY_PATTERN = described(
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$",
    "a quantity such as 500m, 2 or 16Gi",
)
DNS_SUBDOMAIN_PATTERN = described(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
    "a DNS subdomain such as my-secret or example.com (lowercase letters, digits, '-' and"
    " '.', starting and ending with a letter or digit)",
)
# Qualified names as used for label keys: "example.com/my-key" or "my-key"; the name part
# has at most 63 characters, as Kubernetes requires.
QUALIFIED_NAME_PATTERN = described(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$",
    "a qualified name such as example.com/my-key (an optional DNS prefix and '/', then at"
    " most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit)",
)
LABEL_VALUE_PATTERN = described(
    r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$",
    "a label value such as my-value (letters, digits, '-', '_' or '.', starting and ending"
    " with a letter or digit)",
)
DURATION_PATTERN = described(r"^[0-9]+(ms|s|m|h)$", "a duration such as 30s, 500ms, 5m or 1h")


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


# A quantity is a string both Kubernetes' parser (`isQuantity` on the API server) and the
# documented expression accept: they differ on oddities such as "." and "1e1.5".
_QUANTITY_STRING_RULE = f"self.matches(r'{QUANTITY_PATTERN}') && isQuantity(self)"
_QUANTITY_MAX_LENGTH = 64


def _check_quantity(value: int | str) -> int | str:
    text = str(value)
    if not re.fullmatch(QUANTITY_PATTERN, text) or not is_quantity(text):
        raise ValueError("must be " + expectation(QUANTITY_PATTERN))
    return value


# int-or-string, in the structural-schema form Kubernetes accepts: `cpu: 2` or `memory: 16Gi`.
# Every integer is a quantity; strings are checked as above (maxLength bounds the rule's cost).
Quantity = Annotated[
    int | Annotated[str, Field(max_length=_QUANTITY_MAX_LENGTH)],
    AfterValidator(_check_quantity),
    WithJsonSchema(
        {
            "x-kubernetes-int-or-string": True,
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "maxLength": _QUANTITY_MAX_LENGTH,
            CEL_RULES_KEY: [
                cel(
                    f"type(self) == int || ({_QUANTITY_STRING_RULE})",
                    "must be " + expectation(QUANTITY_PATTERN),
                )
            ],
        }
    ),
]
# A quantity always written as a string ("16Gi").
QuantityString = Annotated[
    str,
    Field(max_length=_QUANTITY_MAX_LENGTH),
    AfterValidator(_check_quantity),
    WithJsonSchema(
        {
            "type": "string",
            "maxLength": _QUANTITY_MAX_LENGTH,
            CEL_RULES_KEY: [cel(_QUANTITY_STRING_RULE, "must be " + expectation(QUANTITY_PATTERN))],
        }
    ),
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
        # 64 keys of 253 and values of 3800 characters stay within the 256 KiB that
        # Kubernetes allows for all annotations of an object.
        Annotated[str, Field(max_length=3800)],
    ],
    Field(max_length=64),
]
