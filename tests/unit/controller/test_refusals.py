"""Which API errors are the object's fault, read from the API server's own answers.

The bodies are the API server's answers, as recorded on the sandbox; the e2e tests drive
the same paths against the real server.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client

from llmservice.controller.refusals import Cause, RefusedChildren, api_message, refusal

ENGINE: dict[str, Any] = {
    "kind": "Deployment",
    "metadata": {"name": "chat-engine"},
    "spec": {
        "template": {
            "spec": {
                "containers": [
                    {
                        "name": "vllm",
                        "env": [
                            {"name": "VLLM_NO_USAGE_STATS", "value": "1"},
                            {"name": "HF_HOME", "value": "/models"},
                            {"name": "A", "value": "1"},
                            {"name": "HF_HOME", "value": "/elsewhere"},
                        ],
                    }
                ]
            }
        }
    },
}


def api_error(code: int, body: dict[str, Any] | str) -> client.ApiException:
    error = client.ApiException(status=code, reason="x")
    error.body = body if isinstance(body, str) else json.dumps(body)
    return error


INVALID = {
    "kind": "Status",
    "status": "Failure",
    "message": 'Deployment.apps "chat-engine" is invalid: spec.template.spec.tolerations[1]'
    ".operator: Invalid value: \"Exists\": value must be empty when `operator` is 'Exists'",
    "reason": "Invalid",
    "details": {
        "name": "chat-engine",
        "kind": "Deployment",
        "causes": [
            {
                "reason": "FieldValueInvalid",
                "message": 'Invalid value: "Exists": value must be empty when `operator` is'
                " 'Exists'",
                "field": "spec.template.spec.tolerations[1].operator",
            }
        ],
    },
    "code": 422,
}

DUPLICATE = {
    "kind": "Status",
    "status": "Failure",
    "message": "failed to create typed patch object (e2e/chat-engine; apps/v1, Kind=Deployment):"
    ' .spec.template.spec.containers[name="vllm"].env: duplicate entries for key'
    ' [name="HF_HOME"]',
    "code": 500,
}


def test_invalid_names_each_field() -> None:
    refused = refusal(api_error(422, INVALID), ENGINE)
    assert refused is not None
    assert (refused.kind, refused.name) == ("Deployment", "chat-engine")
    (cause,) = refused.causes
    assert cause.field == "spec.template.spec.tolerations[1].operator"
    assert cause.message.startswith('Invalid value: "Exists"')


def test_invalid_without_causes_keeps_the_message() -> None:
    body = {"kind": "Status", "message": "too big", "reason": "Invalid", "code": 422}
    refused = refusal(api_error(422, body), ENGINE)
    assert refused is not None
    assert refused.causes == (Cause("", "too big"),)


def test_duplicate_key_in_apply_names_the_later_entry() -> None:
    refused = refusal(api_error(500, DUPLICATE), ENGINE)
    assert refused is not None
    assert refused.causes == (
        Cause("spec.template.spec.containers[0].env[3].name", 'Duplicate value: "HF_HOME"'),
    )


def test_other_typed_patch_failures_keep_the_path_and_reason() -> None:
    body = {
        "message": "failed to create typed patch object (e2e/chat; v1, Kind=Service):"
        " .spec.ports: element 0: associative list with keys has an element that omits key"
        ' field "port"',
        "code": 500,
    }
    refused = refusal(api_error(500, body), {"kind": "Service", "metadata": {"name": "chat"}})
    assert refused is not None
    (cause,) = refused.causes
    assert cause.field == "spec.ports"
    assert "omits key" in cause.message


@pytest.mark.parametrize(
    ("code", "body"),
    [
        (500, {"message": "etcdserver: request timed out", "code": 500}),
        (500, "<html>proxy error</html>"),
        (409, {"message": "the object has been modified", "reason": "Conflict", "code": 409}),
        (503, {"message": "unavailable", "code": 503}),
        (403, {"message": "forbidden", "reason": "Forbidden", "code": 403}),
    ],
)
def test_errors_not_caused_by_the_object_are_not_refusals(
    code: int, body: dict[str, Any] | str
) -> None:
    assert refusal(api_error(code, body), ENGINE) is None


def test_api_message_is_the_sentence_not_the_json() -> None:
    assert api_message(api_error(403, {"message": "roles is forbidden"})) == "roles is forbidden"
    assert api_message(api_error(502, "<html/>")) == "502 x"


def test_refused_children_are_recalled_only_for_the_same_stamp() -> None:
    memory = RefusedChildren()
    owner, child = ("ns", "chat"), ("Ingress", "chat")
    memory.remember(owner, child, ("u", 2, "10"), "too long")
    assert memory.recall(owner, child, ("u", 2, "10")) == "too long"
    assert memory.recall(owner, child, ("u", 3, "10")) is None  # a new generation
    assert memory.recall(owner, child, ("u", 2, "11")) is None  # the live child changed
    memory.clear(owner, child)
    assert memory.recall(owner, child, ("u", 2, "10")) is None
    memory.remember(owner, child, ("u", 2, "10"), "too long")
    memory.forget(owner)
    assert memory.recall(owner, child, ("u", 2, "10")) is None
