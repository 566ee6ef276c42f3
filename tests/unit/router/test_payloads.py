"""Pure request checks and response usage extraction."""

from __future__ import annotations

import json

import pytest

from llmservice.router import InvalidRequest, ModelNotFound, UnsupportedMediaType, error_body
from llmservice.router.errors import ClientError, RouterError, ServiceError, UpstreamTimeout
from llmservice.router.payloads import (
    api_chat_request,
    check_content_type,
    parse_body,
    resolve_model,
    usage_from_json,
    usage_from_sse_tail,
    with_priority,
)


@pytest.mark.parametrize(
    "value", [None, b"application/json", b"application/json; charset=utf-8", b"application/x+json"]
)
def test_json_content_types_are_accepted(value: bytes | None) -> None:
    check_content_type(value)


@pytest.mark.parametrize("value", [b"text/plain", b"multipart/form-data; boundary=x", b""])
def test_other_content_types_are_415(value: bytes) -> None:
    with pytest.raises(UnsupportedMediaType):
        check_content_type(value)


def test_parse_body_wants_a_json_object() -> None:
    assert parse_body(b'{"a": 1}') == {"a": 1}
    for raw in (b"", b"nul", b'"x"', b"\xff"):
        with pytest.raises(InvalidRequest):
            parse_body(raw)


def test_resolve_model() -> None:
    names = ("llama", "gpt-4o")
    assert resolve_model({"model": "gpt-4o"}, names, required=True) == "gpt-4o"
    assert resolve_model({}, names, required=False) == "llama"
    with pytest.raises(InvalidRequest):
        resolve_model({}, names, required=True)
    with pytest.raises(InvalidRequest):
        resolve_model({"model": 3}, names, required=True)
    with pytest.raises(ModelNotFound) as caught:
        resolve_model({"model": "mistral"}, names, required=False)
    assert caught.value.status == 404


def test_api_chat_request_keeps_only_known_parameters() -> None:
    body = {"messages": [{"role": "user", "content": "x"}], "temperature": 0, "stop": None}
    assert api_chat_request(body, "llama") == {
        "model": "llama",
        "messages": body["messages"],
        "temperature": 0,
    }
    with pytest.raises(InvalidRequest):
        api_chat_request({**body, "max_tokens": True}, "llama")
    with pytest.raises(InvalidRequest):
        api_chat_request({"temperature": 1}, "llama")


def test_usage_extraction() -> None:
    body = json.dumps({"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 5}})
    assert usage_from_json(body.encode()) == (12, 5)
    assert usage_from_json(b'{"choices": []}') == (0, 0)
    tail = (
        b'data: {"choices":[{"delta":{}}],"usage":null}\n\n'
        b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":9}}\n\n'
        b"data: [DONE]\n\n"
    )
    assert usage_from_sse_tail(tail) == (3, 9)
    assert usage_from_sse_tail(b"data: [DONE]\n\n") == (0, 0)


def test_error_body_is_openai_shaped_with_the_request_id() -> None:
    body = json.loads(error_body(InvalidRequest("bad", param="messages"), "rid-1"))
    assert body == {
        "error": {
            "message": "bad",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "invalid_request",
            "request_id": "rid-1",
        }
    }


def test_error_tree_statuses() -> None:
    assert issubclass(InvalidRequest, ClientError)
    assert issubclass(UpstreamTimeout, ServiceError)
    for cls in (ClientError, ServiceError):
        assert issubclass(cls, RouterError)
    assert all(400 <= c.status < 500 for c in (InvalidRequest, ModelNotFound, UnsupportedMediaType))
    assert UpstreamTimeout.status == 504


@pytest.mark.parametrize(
    "raw",
    [
        b'{"model": "m", "messages": []}',
        b'  {"model":"m","messages":[]}\n ',
        b'{"model": "m", "priority": 7}',  # the client's own is replaced
        b'{"model": "m", "note": "\\"priority\\": 3"}',  # the word in a string
        b"{}",
    ],
)
def test_priority_is_set_on_the_top_level_object(raw: bytes) -> None:
    body = json.loads(raw)
    out = with_priority(raw, body, -10)
    decoded = json.loads(out)
    assert decoded["priority"] == -10
    assert {k: v for k, v in decoded.items() if k != "priority"} == {
        k: v for k, v in json.loads(raw).items() if k != "priority"
    }
