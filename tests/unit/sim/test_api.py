"""The OpenAI API on a real socket, through the official SDK and raw HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from llmservice.sim import SimServer

from .conftest import fast_config


@pytest.fixture
def sdk(sim: SimServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{sim.url}/v1", api_key="unused", max_retries=0) as c:
        yield c


MESSAGES: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "Tell me about prefix caches."}
]


def test_chat_non_streaming(sdk: openai.OpenAI) -> None:
    reply = sdk.chat.completions.create(model="llama", messages=MESSAGES, max_tokens=7)
    assert reply.object == "chat.completion"
    assert reply.id.startswith("chatcmpl-")
    assert reply.model == "llama"
    choice = reply.choices[0]
    assert choice.finish_reason == "length"
    assert choice.message.role == "assistant"
    assert choice.message.content
    assert reply.usage is not None
    assert reply.usage.completion_tokens == 7
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + 7


def test_same_prompt_same_answer_and_alias_accepted(sdk: openai.OpenAI) -> None:
    a = sdk.chat.completions.create(model="llama", messages=MESSAGES, max_tokens=12)
    b = sdk.chat.completions.create(
        model="gpt-3.5-turbo",
        messages=MESSAGES,
        max_tokens=12,
        temperature=0.7,
        top_p=0.9,
    )
    assert a.choices[0].message.content == b.choices[0].message.content
    assert b.model == "llama"  # vLLM reports the first served name


def test_chat_streaming_with_usage(sdk: openai.OpenAI) -> None:
    stream = sdk.chat.completions.create(
        model="llama",
        messages=MESSAGES,
        max_tokens=9,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    content = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content) == 9
    assert chunks[-2].choices[0].finish_reason == "length"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 9
    assert all(c.usage is None for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1
    full = sdk.chat.completions.create(model="llama", messages=MESSAGES, max_tokens=9)
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == full.choices[0].message.content


def test_completions_streaming_and_not(sdk: openai.OpenAI) -> None:
    whole = sdk.completions.create(model="llama", prompt="Once upon a time", max_tokens=5)
    assert whole.object == "text_completion"
    assert whole.choices[0].finish_reason == "length"
    assert whole.usage is not None
    assert whole.usage.completion_tokens == 5
    pieces = list(
        sdk.completions.create(model="llama", prompt="Once upon a time", max_tokens=5, stream=True)
    )
    assert len(pieces) == 5
    assert "".join(p.choices[0].text for p in pieces) == whole.choices[0].text
    assert pieces[-1].choices[0].finish_reason == "length"


def test_token_id_prompt(client: httpx.Client) -> None:
    r = client.post("/v1/completions", json={"prompt": [1, 2, 3], "max_tokens": 2})
    assert r.status_code == 200
    assert r.json()["usage"]["prompt_tokens"] == 3


def test_natural_length_finishes_with_stop(client: httpx.Client) -> None:
    r = client.post("/v1/chat/completions", json={"model": "llama", "messages": MESSAGES})
    body = r.json()
    assert body["choices"][0]["finish_reason"] == "stop"
    assert 16 <= body["usage"]["completion_tokens"] <= 128


def test_stop_string(client: httpx.Client) -> None:
    base = {"model": "llama", "prompt": "stop test", "max_tokens": 40}
    text = client.post("/v1/completions", json=base).json()["choices"][0]["text"]
    word = text.split()[3]
    r = client.post("/v1/completions", json={**base, "stop": [word]}).json()
    choice = r["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert choice["stop_reason"] == word
    assert word not in choice["text"].split()
    assert text.startswith(choice["text"])


def test_models_and_health(sdk: openai.OpenAI, client: httpx.Client) -> None:
    assert [m.id for m in sdk.models.list()] == ["llama", "gpt-3.5-turbo"]
    health = client.get("/health")
    assert health.status_code == 200
    assert health.headers["x-inference-pod"] == "sim-0"
    assert client.get("/v1/models").json()["data"][0]["max_model_len"] == 4096


def test_request_id_is_echoed(client: httpx.Client) -> None:
    r = client.post(
        "/v1/completions", json={"prompt": "x", "max_tokens": 1}, headers={"x-request-id": "abc"}
    )
    assert r.headers["x-request-id"] == "abc"
    assert r.headers["x-inference-pod"] == "sim-0"


def _error(r: httpx.Response) -> dict[str, object]:
    body = r.json()
    assert set(body) == {"error"}
    error: dict[str, object] = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == r.status_code
    return error


@pytest.mark.parametrize(
    ("path", "body", "status", "type_"),
    [
        ("/v1/chat/completions", b'{"model": "llama", "messages": [', 400, "BadRequestError"),
        ("/v1/chat/completions", b"\xff\xfe", 400, "BadRequestError"),
        ("/v1/chat/completions", b"[1, 2]", 400, "BadRequestError"),
        ("/v1/chat/completions", b'{"model": "llama"}', 400, "BadRequestError"),
        ("/v1/chat/completions", b'{"messages": [{"content": "x"}]}', 400, "BadRequestError"),
        ("/v1/completions", b'{"model": "nope", "prompt": "x"}', 404, "NotFoundError"),
        ("/v1/completions", b'{"prompt": "x", "max_tokens": "5"}', 400, "BadRequestError"),
        ("/v1/completions", b'{"prompt": "x", "max_tokens": 0}', 400, "BadRequestError"),
        ("/v1/completions", b'{"prompt": "x", "n": 2}', 400, "BadRequestError"),
        ("/v1/completions", b'{"prompt": "x", "temperature": -1}', 400, "BadRequestError"),
        ("/v1/completions", b'{"prompt": {"a": 1}}', 400, "BadRequestError"),
        ("/v1/completions", b'{"prompt": "x", "stop": 5}', 400, "BadRequestError"),
        ("/v1/completions", b'{"prompt": "x", "stream": "yes"}', 400, "BadRequestError"),
        (
            "/v1/completions",
            b'{"prompt": "x", "stream_options": {"include_usage": true}}',
            400,
            "BadRequestError",
        ),
    ],
)
def test_bad_requests_get_vllm_errors(
    client: httpx.Client, path: str, body: bytes, status: int, type_: str
) -> None:
    r = client.post(path, content=body, headers={"content-type": "application/json"})
    assert r.status_code == status
    assert _error(r)["type"] == type_


def test_too_long_for_the_context(client: httpx.Client) -> None:
    long_prompt = "word " * 5000
    r = client.post("/v1/completions", json={"prompt": long_prompt, "max_tokens": 1})
    assert r.status_code == 400
    assert "maximum context length is 4096 tokens" in str(_error(r)["message"])
    r = client.post("/v1/completions", json={"prompt": "hello", "max_tokens": 4096})
    assert r.status_code == 400
    message = str(_error(r)["message"])
    assert "'max_tokens' or 'max_completion_tokens' is too large: 4096" in message


def test_sdk_raises_typed_errors(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as not_found:
        sdk.chat.completions.create(model="nope", messages=MESSAGES)
    assert "does not exist" in str(not_found.value)
    with pytest.raises(openai.BadRequestError):
        sdk.chat.completions.create(model="llama", messages=MESSAGES, max_tokens=10**6)


def test_unknown_path_and_method(client: httpx.Client) -> None:
    assert client.get("/v1/nothing").status_code == 404
    assert client.get("/v1/chat/completions").status_code == 405


def test_api_key() -> None:
    with (
        SimServer(fast_config(api_key="s3cret")) as server,
        httpx.Client(base_url=server.url, timeout=30) as c,
    ):
        body = {"prompt": "x", "max_tokens": 1}
        assert c.post("/v1/completions", json=body).status_code == 401
        wrong = {"authorization": "Bearer nope"}
        assert c.post("/v1/completions", json=body, headers=wrong).status_code == 401
        right = {"authorization": "Bearer s3cret"}
        assert c.post("/v1/completions", json=body, headers=right).status_code == 200
        assert c.get("/health").status_code == 200  # probes need no key, as in vLLM


def test_chunks_are_server_sent_events(client: httpx.Client) -> None:
    body = {"prompt": "sse", "max_tokens": 3, "stream": True}
    with client.stream("POST", "/v1/completions", json=body) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        raw = r.read().decode()
    events = [e for e in raw.split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    assert all(e.startswith("data: ") for e in events)
    assert [json.loads(e[6:])["object"] for e in events[:-1]] == ["text_completion"] * 3


def test_bodies_carry_the_fields_vllm_sends(client: httpx.Client) -> None:
    """vLLM's keys, null when not asked for; the conformance suite checks them against vLLM."""
    chat = {"model": "llama", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
    body = client.post("/v1/chat/completions", json=chat).json()
    assert body["system_fingerprint"].startswith("vllm-")
    assert {"kv_transfer_params", "prompt_token_ids", "service_tier"} <= body.keys()
    assert "tool_calls" not in body["choices"][0]["message"]
    assert body["choices"][0]["message"]["reasoning"] is None
    assert body["usage"]["completion_tokens_details"] is None
    text = client.post("/v1/completions", json={"model": "llama", "prompt": "hi", "max_tokens": 2})
    assert "prompt_logprobs" in text.json()["choices"][0]
    assert "prompt_logprobs" not in text.json()
    card = client.get("/v1/models").json()["data"][0]
    assert card["permission"][0]["object"] == "model_permission"


def test_the_last_streamed_chunk_carries_the_fingerprint(client: httpx.Client) -> None:
    chat = {"model": "llama", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
    for options in ({"include_usage": True}, {"include_usage": False}):
        response = client.post(
            "/v1/chat/completions", json={**chat, "stream": True, "stream_options": options}
        )
        lines = [ln.removeprefix("data: ") for ln in response.text.splitlines() if ln]
        chunks = [json.loads(line) for line in lines[:-1]]
        assert [("system_fingerprint" in c) for c in chunks] == [False] * (len(chunks) - 1) + [True]
        assert ("usage" in chunks[-1]) is options["include_usage"]
        if options["include_usage"]:  # the usage chunk has no details, as vLLM's
            assert "prompt_tokens_details" not in chunks[-1]["usage"]
