"""Schema validation of rendered objects against the target Kubernetes version.

Built-in kinds are checked with kubernetes-validate (the Kubernetes OpenAPI schema, strict:
unknown fields fail). ServiceMonitor and PrometheusRule are not built-in kinds; they are
checked against the subset of the Prometheus Operator's schemas that rendering uses, with
unknown fields forbidden.
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
                            "honorLabels": {"type": "boolean"},
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

_DURATION = {
    "type": "string",
    "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?"
    r"(([0-9]+)s)?(([0-9]+)ms)?)$",
}
PROMETHEUS_RULE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PrometheusRule"},
        "metadata": SERVICE_MONITOR_SCHEMA["properties"]["metadata"],
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "groups": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["name", "rules"],
                        "properties": {
                            "name": {"type": "string", "minLength": 1},
                            "rules": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "required": ["expr"],
                                    "properties": {
                                        "alert": {"type": "string"},
                                        "expr": {"type": "string"},
                                        "for": _DURATION,
                                        "labels": _LABELS,
                                        "annotations": _LABELS,
                                    },
                                },
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
    if obj.get("kind") == "PrometheusRule":
        jsonschema.validate(obj, PROMETHEUS_RULE_SCHEMA)
        return
    kubernetes_validate.validate(obj, TARGET_KUBERNETES_VERSION, strict=True)
