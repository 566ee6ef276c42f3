"""A ValidatingAdmissionPolicy refusing Ingress hosts under blocked.example.

With reason Invalid the API server answers 422, like its own validation, but a policy's
validations have no field path: the one cause it returns names no field, only the policy,
its binding and the message.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kubernetes import client

from tests.e2e.blocked_hosts import (
    BLOCKED_SUFFIX,
    INGRESS_WRITES,
    NAMESPACE_LABEL,
    REFUSAL,
    wait_enforced,
)


def _policy(name: str) -> dict[str, Any]:
    # The operator renders a single rule; the expression looks at its host only.
    allowed = (
        "!has(object.spec.rules) || size(object.spec.rules) == 0"
        " || !has(object.spec.rules[0].host)"
        f" || !object.spec.rules[0].host.endsWith('{BLOCKED_SUFFIX}')"
    )
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [INGRESS_WRITES]},
            "validations": [{"expression": allowed, "message": REFUSAL, "reason": "Invalid"}],
        },
    }


def _binding(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {
            "policyName": name,
            "validationActions": ["Deny"],
            "matchResources": {"namespaceSelector": {"matchLabels": {NAMESPACE_LABEL: namespace}}},
        },
    }


@contextmanager
def policy_blocking_hosts(
    kube: client.ApiClient, namespace: str, name: str
) -> Iterator[client.ApiException]:
    """The policy `name`, bound to `namespace`, until exit; yields the probe's refusal."""
    admission = client.AdmissionregistrationV1Api(kube)
    admission.create_validating_admission_policy(_policy(name))
    try:
        admission.create_validating_admission_policy_binding(_binding(name, namespace))
        try:
            yield wait_enforced(kube, namespace, f"the policy {name}")
        finally:
            admission.delete_validating_admission_policy_binding(name)
    finally:
        admission.delete_validating_admission_policy(name)
