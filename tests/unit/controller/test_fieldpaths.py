"""A child's field is named as the LLMService field it comes from."""

from __future__ import annotations

from typing import Any

import pytest

from llmservice.api import LLMService
from llmservice.api.validation import parse_llmservice
from llmservice.controller.fieldpaths import describe, spec_field
from llmservice.controller.refusals import Cause, Refusal
from llmservice.render import render_all
from tests.unit.api.fixtures import MINIMAL, deep_merge

SPEC = {
    "spec": {
        "model": {"hfTokenSecretRef": {"name": "hf-token"}},
        "storage": {"enabled": True},
        "engine": {
            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
            "tolerations": [{"key": "x", "operator": "Exists"}],
            "extraArgs": ["--enforce-eager"],
            "nodeSelector": {"pool": "gpu"},
        },
        "networkPolicy": {"enabled": True},
        "ingress": {"enabled": True, "host": "chat.example.com"},
    }
}


@pytest.fixture(scope="module")
def rendered() -> tuple[LLMService, dict[tuple[str, str], dict[str, Any]]]:
    service = parse_llmservice(deep_merge(MINIMAL, SPEC))
    return service, {(o["kind"], o["metadata"]["name"]): o for o in render_all(service)}


@pytest.mark.parametrize(
    ("child", "field", "expected"),
    [
        # The operator's four env entries (usage stats, HF_HOME, HF_TOKEN) come first.
        (("Deployment", "chat-engine"), "spec.template.spec.containers[0].env[5].name",
         "spec.engine.env[1].name"),
        (("Deployment", "chat-engine"), "spec.template.spec.containers[0].env[4]",
         "spec.engine.env[0]"),
        (("Deployment", "chat-engine"), "spec.template.spec.containers[0].env[2].name",
         "spec.engine.env"),
        (("Deployment", "chat-engine"), "spec.template.spec.tolerations[1].operator",
         "spec.engine.tolerations[0].operator"),
        (("Deployment", "chat-engine"), "spec.template.spec.containers[0].resources.requests",
         "spec.engine.resources.requests"),
        (("Deployment", "chat-engine"),
         "spec.template.spec.containers[0].resources.limits[nvidia.com/gpu]",
         "spec.engine.gpuResourceName"),
        (("Deployment", "chat-engine"), "spec.template.spec.nodeSelector",
         "spec.engine.nodeSelector"),
        (("Deployment", "chat-engine"), "spec.template.spec.tolerations[0].key",
         "spec.engine.gpuResourceName"),
        (("Deployment", "chat-engine"), "spec.template.spec.volumes[0].emptyDir.sizeLimit",
         "spec.engine.shmSize"),
        (("Deployment", "chat-engine"), "spec.template.spec.containers[0].volumeMounts[1]"
         ".mountPath", "spec.storage.mountPath"),
        (("NetworkPolicy", "chat-engine"),
         "spec.ingress[0].from[2].namespaceSelector.matchLabels",
         "spec.networkPolicy.monitoringNamespaceLabels"),
        (("Deployment", "chat-router"), "spec.template.spec.containers[0].resources.limits",
         "spec.router.resources.limits"),
        (("Ingress", "chat"), "metadata.annotations", "spec.ingress.annotations"),
        (("Ingress", "chat"), "spec.rules[0].host", "spec.ingress.host"),
        (("Service", "chat"), "metadata.name", "metadata.name"),
        (("PersistentVolumeClaim", "chat-models"), "spec.resources[storage]",
         "spec.storage.size"),
        (("Deployment", "chat-engine"), "spec.template.spec.containers[0].envFrom", None),
        (("Deployment", "chat-engine"), "", None),
    ],
)  # fmt: skip
def test_child_fields_map_to_spec_fields(
    rendered: tuple[LLMService, dict[tuple[str, str], dict[str, Any]]],
    child: tuple[str, str],
    field: str,
    expected: str | None,
) -> None:
    service, children = rendered
    assert spec_field(field, children[child], service) == expected


def test_user_args_follow_the_operators(
    rendered: tuple[LLMService, dict[tuple[str, str], dict[str, Any]]],
) -> None:
    service, children = rendered
    engine = children[("Deployment", "chat-engine")]
    args = engine["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[-1] == "--enforce-eager"
    field = f"spec.template.spec.containers[0].args[{len(args) - 1}]"
    assert spec_field(field, engine, service) == "spec.engine.extraArgs[0]"


def test_the_message_names_the_spec_field_first(
    rendered: tuple[LLMService, dict[tuple[str, str], dict[str, Any]]],
) -> None:
    service, children = rendered
    refused = Refusal(
        "Deployment",
        "chat-engine",
        (
            Cause("spec.template.spec.containers[0].env[5].name", 'Duplicate value: "A"'),
            Cause("spec.template.spec.hostAliases", "Invalid value"),
            Cause("spec.template.spec.hostAliases", "Invalid value"),
        ),
    )
    assert describe(refused, children[("Deployment", "chat-engine")], service) == (
        'spec.engine.env[1].name: Duplicate value: "A" (refused in Deployment chat-engine'
        " spec.template.spec.containers[0].env[5].name); Deployment chat-engine"
        " spec.template.spec.hostAliases: Invalid value"
    )
