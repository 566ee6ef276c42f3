"""Pure request checks and response usage extraction."""

from __future__ import annotations

import json

import pytest

from llmservice.router import InvalidRequest, ModelNotFound, UnsupportedMediaType, error_body
from llmservice.router.balancer import routing_key
from llmservice.router.errors import ClientError, RouterError, ServiceError, UpstreamTimeout
from llmservice.router.payloads import (
    TEXT_HEAD_BYTES,
    api_chat_body,
    check_content_type,
    check_required,
    continues,
    parse_body,
    prompt_view,
    resolve_model,
    set_fields,
    usage_from_json,
    usage_from_sse_tail,
)
from llmservice.router.routes import ROUTES, Prompt


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
    fields = parse_body(b'{"model": "m", "other": [1, {"x": 2}]}')
    assert bytes(fields.model) == b'"m"'
    assert not fields.messages
    for raw in (b"", b"nul", b'"x"', b"\xff", b"[1]", b'{"a": NaN}'):
        with pytest.raises(InvalidRequest):
            parse_body(raw)


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply"),
        (b'{"messages": [{"content": "\\ud800"}]}', "not valid JSON"),
        (b'{"a": "\xff\xfe"}', "not valid UTF-8"),
        (b'{"model": ' + b"9" * 5000 + b"}", "'model' must be a string"),
        (b'{"stream": true', "not valid JSON"),
    ],
)
def test_hostile_bodies_are_client_errors(raw: bytes, says: str) -> None:
    def parse_and_resolve() -> None:
        resolve_model(parse_body(raw), ("llama",), required=False)

    with pytest.raises(InvalidRequest, match=says):
        parse_and_resolve()


def test_numbers_the_router_does_not_read_are_left_to_the_engine() -> None:
    parse_body(b'{"model": "m", "seed": ' + b"9" * 5000 + b"}")


def test_resolve_model() -> None:
    names = ("llama", "gpt-4o")

    def resolve(raw: bytes, *, required: bool, any_name: bool = False) -> str | None:
        return resolve_model(parse_body(raw), names, required=required, any_name=any_name)

    assert resolve(b'{"model": "gpt-4o"}', required=True) == "gpt-4o"
    assert resolve(b"{}", required=False) is None
    assert resolve(b'{"model": null}', required=False) is None
    with pytest.raises(InvalidRequest):
        resolve(b"{}", required=True)
    with pytest.raises(InvalidRequest):
        resolve(b'{"model": 3}', required=True)
    with pytest.raises(ModelNotFound) as caught:
        resolve(b'{"model": "mistral"}', required=False)
    assert caught.value.status == 404
    assert resolve(b'{"model": "gpt-4"}', required=True, any_name=True) == "gpt-4"


@pytest.mark.parametrize(
    ("path", "raw", "param"),
    [
        ("/v1/chat/completions", b"{}", "messages"),
        ("/v1/chat/completions", b'{"messages": []}', "messages"),
        ("/v1/chat/completions", b'{"messages": ["hi"]}', "messages"),
        ("/v1/chat/completions", b'{"messages": [{"role": "user"}, 3]}', "messages"),
        ("/v1/chat/completions", b'{"messages": "hi"}', "messages"),
        ("/v1/completions", b'{"prompt": ""}', "prompt"),
        ("/v1/embeddings", b'{"input": null}', "input"),
        ("/detokenize", b"{}", "tokens"),
        ("/v1/rerank", b'{"documents": ["a"]}', "query"),
    ],
)
def test_required_fields(path: str, raw: bytes, param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        check_required(ROUTES[path], parse_body(raw))
    assert caught.value.param == param


@pytest.mark.parametrize(
    ("path", "raw"),
    [
        ("/v1/embeddings", b'{"messages": [{"role": "user", "content": "x"}]}'),
        ("/tokenize", b'{"prompt": "x"}'),
        ("/score", b'{"queries": "a", "documents": ["b"]}'),
        # Only the head is checked; past it the engine decides.
        ("/v1/chat/completions", b'{"messages": [' + b'{"role": "user"}, ' * 16 + b"3]}"),
    ],
)
def test_required_fields_present(path: str, raw: bytes) -> None:
    check_required(ROUTES[path], parse_body(raw))


def test_prompt_view_decodes_only_the_head() -> None:
    many = b",".join([b'{"role": "user", "content": "later"}'] * 100_000)
    raw = (
        b'{"messages": [{"role": "system", "content": [{"type": "text", "text": "be "},'
        b' {"type": "text", "text": "brief"}]}, ' + many + b'], "user": 7}'
    ).replace(b'\\"', b'"')
    view = prompt_view(Prompt.CHAT, parse_body(raw))
    assert view["user"] is None
    assert view["messages"][0] == {"role": "system", "content": "be brief"}
    assert len(view["messages"]) == 16
    completion = prompt_view(Prompt.COMPLETION, parse_body(b'{"prompt": ["a", "b"]}'))
    assert completion["prompt"] == "a"
    responses = parse_body(b'{"instructions": "sys", "input": "hi", "user": "u"}')
    assert prompt_view(Prompt.RESPONSES, responses) == {
        "user": "u",
        "messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"}],
    }
    anthropic = parse_body(b'{"system": "sys", "messages": [{"role": "user", "content": "x"}]}')
    assert prompt_view(Prompt.ANTHROPIC, anthropic)["messages"][0]["content"] == "sys"


def test_api_chat_body_passes_every_field_and_drops_nulls() -> None:
    body = {
        "messages": [{"role": "user", "content": "x"}],
        "temperature": 0,
        "min_p": 0.1,
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
        "logprobs": None,
        "model": "gpt-3.5-turbo",
    }
    out = json.loads(api_chat_body(json.dumps(body).encode(), "llama", {"priority": b"-3"}))
    expected = {k: v for k, v in body.items() if v is not None}
    assert out == {**expected, "model": "llama", "priority": -3}


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
        b'{"tools": [{"priority": 1}], "priority": 1}',  # nested first
        b'{"priority": 1, "priority": 2}',  # repeated: rebuilt
        b'{"pri\\u006frity": 4}',  # escaped name: rebuilt
        b"{}",
        b"{ }",
    ],
)
def test_priority_is_set_on_the_top_level_object(raw: bytes) -> None:
    out = set_fields(raw, parse_body(raw), {"priority": b"-10"})
    decoded = json.loads(out)
    assert decoded["priority"] == -10
    assert {k: v for k, v in decoded.items() if k != "priority"} == {
        k: v for k, v in json.loads(raw).items() if k != "priority"
    }


@pytest.mark.parametrize(
    "raw",
    [
        b'{"model": "gpt-3.5-turbo", "messages": []}',
        b'{"messages": [{"content": "\\"model\\": \\"gpt-3.5-turbo\\""}],'
        b' "model" : "gpt-3.5-turbo"}',
        b'{"tools": [{"model": "gpt-3.5-turbo"}], "model": "gpt-3.5-turbo"}',
    ],
)
def test_model_is_rewritten_only_at_the_top_level(raw: bytes) -> None:
    out = set_fields(raw, parse_body(raw), {"model": b'"llama"'})
    original = json.loads(raw)
    assert json.loads(out) == {**original, "model": "llama"}


@pytest.mark.parametrize("tail", ["a", "é", "😀", "\\", '"', "\n"])
def test_a_long_text_gives_the_same_prefix_key_as_its_head(tail: str) -> None:
    # Every cut position near the decoding limit, across escapes and multi-byte characters.
    for pad in range(16):
        text = "x" * (TEXT_HEAD_BYTES - 40 + pad) + tail * 60
        raw = json.dumps({"messages": [{"role": "user", "content": text}]}).encode()
        view = prompt_view(Prompt.CHAT, parse_body(raw))
        head = view["messages"][0]["content"]
        assert text.startswith(head)
        assert len(head) >= TEXT_HEAD_BYTES // 4 - 16
        key = routing_key(None, view, 1000)
        assert key == routing_key(None, {"messages": [{"role": "user", "content": text}]}, 1000)


@pytest.mark.parametrize(
    ("messages", "later"),
    [
        ([{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}], False),
        ([{"role": "user", "content": "hi"}], False),
        (
            [
                {"role": "system", "content": "s"},
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello"},
                {"role": "user", "content": "more"},
            ],
            True,
        ),
        # Roles are read, not words: "assistant" in a text, quoted or not, is no answer.
        ([{"role": "user", "content": 'the "assistant" said'}], False),
        ([{"role": "user", "content": "x"}, {"role": "user", "content": "assistant"}], False),
        ([{"role": "user", "content": "x"}, "assistant"], False),
        ([{"content": "x", "role": "assistant"}, {"role": "user", "content": "y"}], False),
        ([{"role": "user", "content": "x"}, {"content": "y", "role": "assistant"}], True),
    ],
)
def test_a_later_turn_is_told_by_an_answer_among_its_messages(
    messages: list[object], later: bool
) -> None:
    fields = parse_body(json.dumps({"model": "m", "messages": messages}).encode())
    assert continues(Prompt.CHAT, fields) is later
    assert continues(Prompt.ANTHROPIC, fields) is later


def test_only_chat_shaped_requests_are_later_turns() -> None:
    answered = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]
    fields = parse_body(json.dumps({"model": "m", "messages": answered}).encode())
    assert not continues(Prompt.COMPLETION, fields)
    assert not continues(Prompt.RESPONSES, fields)
    assert not continues(Prompt.CHAT, parse_body(b'{"model": "m", "prompt": "x"}'))
