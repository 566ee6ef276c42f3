"""Schema validation of rendered objects against the target Kubernetes version.

Built-in kinds are checked with kubernetes-validate (the Kubernetes OpenAPI schema, strict:
unknown fields fail). ServiceMonitor is not a built-in kind; it is checked against the subset
of the Prometheus Operator's schema that rendering uses, with unknown fields forbidden.
"""

from __future__ import annotations

from typing import Any

import jsonschema
import kubernetes_validate

from llmservice.sandbox.versions import KUBERNETES_VERSION

# The Kubernetes minor version the sandbox runs; rendered objects must be valid for it.
_MAJOR, _MINOR, _ = KUBERNETES_VERSION.lstrip("v").split(".")
TARGET_KUBERNETES_VERSION = f"{_MAJOR}.{_MINOR}.0"

_LABELS = {"type": "object", "additionalProperties": {"type": "string"}}
SERVICE_MONITOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {
            "type": "object",
            "required": ["name", "namespace"],
            "properties": {
                "name": {"type": "string", "maxLength": 253},
                "namespace": {"type": "string"},
                "labels": _LABELS,
                "ownerReferences": {"type": "array"},
            },
            "additionalProperties": False,
        },
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector", "endpoints"],
            "properties": {
                "selector": {
                    "type": "object",
                    "properties": {"matchLabels": _LABELS},
                    "additionalProperties": False,
                },
                "namespaceSelector": {
                    "type": "object",
                    "properties": {"matchNames": {"type": "array", "items": {"type": "string"}}},
                    "additionalProperties": False,
                },
                "targetLabels": {"type": "array", "items": {"type": "string"}},
                "endpoints": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "interval": {
                                "type": "string",
                                "pattern": r"^(0|(\d+h)?(\d+m)?(\d+s)?(\d+ms)?)$",
                            },
                        },
                    },
                },
            },
        },
    },
}


def validate_object(obj: dict[str, Any]) -> None:
    """Raise if `obj` is not valid for the target Kubernetes version."""
    if obj.get("kind") == "ServiceMonitor":
        jsonschema.validate(obj, SERVICE_MONITOR_SCHEMA)
        return
    kubernetes_validate.validate(obj, TARGET_KUBERNETES_VERSION, strict=True)
