"""The operator's ClusterRole: enumerated, Secret-free, and enough for what it renders.

"Enough" is checked against the renderer itself: every kind `render_all` produces for the
fullest example must be writable, and every rule of the router's Role must be held by the
operator, since RBAC lets nobody grant what they do not hold (without `escalate`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from llmservice.api.validation import parse_llmservice
from llmservice.render import render_all
from tests.unit.deploy.manifests import REPO, one
from tests.unit.golden import EXAMPLES

# Every kind the renderer produces -> (API group, resource). A new kind fails the test below
# until it is added here and to deploy/rbac.yaml.
RESOURCES = {
    "Deployment": ("apps", "deployments"),
    "Service": ("", "services"),
    "ServiceAccount": ("", "serviceaccounts"),
    "PersistentVolumeClaim": ("", "persistentvolumeclaims"),
    "Role": ("rbac.authorization.k8s.io", "roles"),
    "RoleBinding": ("rbac.authorization.k8s.io", "rolebindings"),
    "Ingress": ("networking.k8s.io", "ingresses"),
    "NetworkPolicy": ("networking.k8s.io", "networkpolicies"),
    "PodDisruptionBudget": ("policy", "poddisruptionbudgets"),
    "ServiceMonitor": ("monitoring.coreos.com", "servicemonitors"),
    "PrometheusRule": ("monitoring.coreos.com", "prometheusrules"),
}
# Server-side apply is a patch (and a create for a new child); drift needs get/list/watch;
# pruning needs delete.
CHILD_VERBS = ("get", "list", "watch", "create", "patch", "delete")
KNOWN_VERBS = {"get", "list", "watch", "create", "update", "patch", "delete"}
GROUP = "serving.llmservice.dev"


def rules() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = one("ClusterRole")["rules"]
    return found


def allows(verb: str, group: str, resource: str, granted: list[dict[str, Any]]) -> bool:
    return any(
        group in rule.get("apiGroups", [])
        and resource in rule.get("resources", [])
        and verb in rule.get("verbs", [])
        and not rule.get("resourceNames")
        for rule in granted
    )


def rendered(example: Path) -> list[dict[str, Any]]:
    document = yaml.safe_load(example.read_text(encoding="utf-8"))
    return render_all(parse_llmservice(document))


def test_no_wildcards() -> None:
    for rule in rules():
        for field in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
            assert not any("*" in value for value in rule.get(field, [])), rule


def test_verbs_are_known_and_escalation_verbs_absent() -> None:
    for rule in rules():
        assert set(rule["verbs"]) <= KNOWN_VERBS, rule


def test_no_secrets() -> None:
    for rule in rules():
        assert "secrets" not in rule["resources"], rule


def test_rules_are_documented_in_commented_blocks() -> None:
    text = (REPO / "deploy" / "rbac.yaml").read_text(encoding="utf-8")
    assert "Framework (kopf)" in text
    assert "Application" in text


def test_binding_grants_the_role_to_the_operator_service_account() -> None:
    binding = one("ClusterRoleBinding")
    account = one("ServiceAccount")["metadata"]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": one("ClusterRole")["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["name"], "namespace": account["namespace"]}
    ]


def test_every_rendered_kind_is_writable() -> None:
    kinds = {obj["kind"] for obj in rendered(REPO / "examples" / "full.yaml")}
    assert kinds <= set(RESOURCES), f"add {kinds - set(RESOURCES)} to RESOURCES and rbac.yaml"
    for kind in kinds:
        group, resource = RESOURCES[kind]
        for verb in CHILD_VERBS:
            assert allows(verb, group, resource, rules()), f"{verb} {resource}.{group}"


@pytest.mark.parametrize(
    ("verb", "group", "resource"),
    [
        ("get", "", "pods"),
        ("list", "", "pods"),
        ("watch", "", "pods"),
        ("get", GROUP, "llmservices"),
        ("list", GROUP, "llmservices"),
        ("watch", GROUP, "llmservices"),
        ("patch", GROUP, "llmservices"),
        ("patch", GROUP, "llmservices/status"),
        ("update", GROUP, "llmservices/finalizers"),
        ("create", "", "events"),
        ("create", "events.k8s.io", "events"),
        ("get", "apiextensions.k8s.io", "customresourcedefinitions"),
        ("list", "apiextensions.k8s.io", "customresourcedefinitions"),
        ("watch", "apiextensions.k8s.io", "customresourcedefinitions"),
    ],
)
def test_operator_permission(verb: str, group: str, resource: str) -> None:
    assert allows(verb, group, resource, rules())


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.stem for e in EXAMPLES])
def test_operator_holds_every_permission_it_grants(example: Path) -> None:
    for role in (o for o in rendered(example) if o["kind"] == "Role"):
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        assert allows(verb, group, resource, rules()), (
                            f"{role['metadata']['name']} grants {verb} {resource}.{group}"
                        )
