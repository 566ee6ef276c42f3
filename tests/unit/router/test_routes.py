"""Every inference route vLLM serves, through the router on real sockets, body untouched."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from llmservice.router.routes import ROUTES

from .backends import FakeBackend, Mode
from .conftest import RouterServer, config, run

# A body for each proxied route, with its required field, as the vLLM docs show them.
BODIES: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": {"messages": [{"role": "user", "content": "hi"}]},
    "/v1/completions": {"prompt": "Once upon"},
    "/v1/chat/completions/batch": {
        "messages": [[{"role": "user", "content": "hi"}], [{"role": "user", "content": "yo"}]]
    },
    "/inference/v1/generate": {"token_ids": [1, 2, 3], "sampling_params": {"max_tokens": 4}},
    "/generative_scoring": {"query": "q", "items": ["a"], "label_token_ids": [1, 2]},
    "/v1/embeddings": {"input": ["a", "b"], "encoding_format": "float"},
    "/v1/responses": {"input": "hi", "instructions": "be brief", "reasoning": {"effort": "low"}},
    "/v1/messages": {"max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]},
    "/v1/messages/count_tokens": {"messages": [{"role": "user", "content": "hi"}]},
    "/tokenize": {"prompt": "hello", "add_special_tokens": False},
    "/detokenize": {"tokens": [1, 2, 3]},
    "/pooling": {"input": "x", "encoding_format": "float"},
    "/classify": {"input": ["x"]},
    "/v2/embed": {"texts": ["x"], "input_type": "search_document"},
    "/score": {"queries": "q", "documents": ["a"]},
    "/v1/score": {"text_1": "q", "text_2": ["a"]},
    "/rerank": {"query": "q", "documents": ["a", "b"], "top_n": 1},
    "/v1/rerank": {"query": "q", "documents": ["a"]},
    "/v2/rerank": {"query": "q", "documents": ["a"]},
}
UPSTREAM = "/v1/chat/completions"  # where /api/chat goes


def test_every_route_has_a_body() -> None:
    assert set(BODIES) | {"/api/chat"} == set(ROUTES)


@pytest.mark.parametrize("path", sorted(BODIES))
def test_each_route_reaches_the_engine_on_its_path_with_the_model_rewritten(path: str) -> None:
    async def scenario() -> None:
        async with (
            FakeBackend(Mode.JSON) as backend,
            RouterServer(config(backend.url)) as router,
            aiohttp.ClientSession() as client,
        ):
            sent = {**BODIES[path], "model": "gpt-3.5-turbo", "vendor_extra": {"k": [1, None]}}
            async with client.post(router.url + path + "?q=1", json=sent) as response:
                assert response.status == 200
            # The model name as the engine serves it, every other field as it came.
            assert backend.requests[-1].path == path + "?q=1"
            assert backend.requests[-1].json() == {**sent, "model": "llama"}

            as_is = json.dumps({**BODIES[path], "model": "llama"}, indent=1).encode()
            json_type = {"Content-Type": "application/json"}
            async with client.post(router.url + path, data=as_is, headers=json_type) as response:
                assert response.status == 200
            assert backend.requests[-1].body == as_is  # the same bytes: nothing re-encoded

    run(scenario())


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/tokenize", "/v1/embeddings"])
def test_routes_that_let_the_model_out_leave_it_to_the_engine(path: str) -> None:
    async def scenario() -> None:
        async with (
            FakeBackend(Mode.JSON) as backend,
            RouterServer(config(backend.url)) as router,
            aiohttp.ClientSession() as client,
        ):
            async with client.post(router.url + path, json=BODIES[path]) as response:
                assert response.status == 200
            assert backend.requests[-1].json() == BODIES[path]

    run(scenario())


# The /api/chat body users copy: full sampling parameters, tools, and a trailing null.
API_CHAT_BODY: dict[str, Any] = {
    "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is the weather in Paris?"},
    ],
    "temperature": 0.7,
    "top_p": 0.9,
    "top_k": 40,
    "min_p": 0.05,
    "max_tokens": 64,
    "stop": ["\n\n"],
    "presence_penalty": 0.1,
    "frequency_penalty": 0.1,
    "repetition_penalty": 1.05,
    "seed": 7,
    "n": 1,
    "stream": False,
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ],
    "tool_choice": "auto",
    "response_format": {"type": "text"},
    "logit_bias": None,
    "logprobs": None,
}


def test_api_chat_forwards_every_parameter_and_drops_nulls() -> None:
    async def scenario() -> None:
        async with (
            FakeBackend(Mode.JSON) as backend,
            RouterServer(config(backend.url)) as router,
            aiohttp.ClientSession() as client,
        ):
            async with client.post(router.url + "/api/chat", json=API_CHAT_BODY) as response:
                assert response.status == 200
                session = response.headers["X-Session-ID"]
            assert session
            received = backend.requests[-1]
            assert received.path == UPSTREAM
            expected = {k: v for k, v in API_CHAT_BODY.items() if v is not None}
            assert received.json() == {**expected, "model": "llama"}

            # The session the client sends back is kept, and routes the request.
            headers = {"X-Session-ID": "s-1"}
            async with client.post(
                router.url + "/api/chat", json=API_CHAT_BODY, headers=headers
            ) as response:
                assert response.headers["X-Session-ID"] == "s-1"
            assert router.log_lines()[-1]["key"] == "session"

    run(scenario())


def test_an_engine_400_reaches_the_client_byte_for_byte() -> None:
    async def scenario() -> None:
        async with (
            FakeBackend(Mode.STATUS, status=400) as backend,
            RouterServer(config(backend.url)) as router,
            aiohttp.ClientSession() as client,
        ):
            body = {**API_CHAT_BODY, "model": "llama", "min_p": 7}
            async with client.post(router.url + "/v1/chat/completions", json=body) as response:
                assert response.status == 400
                got = await response.read()
            expected = json.dumps({"error": {"message": "engine failed", "type": "server"}})
            assert got == expected.encode()
            assert len(backend.requests) == 1  # a 4xx is the engine's answer: no retry

    run(scenario())


def test_models_by_id_and_health() -> None:
    async def scenario() -> None:
        async with (
            RouterServer(config()) as router,
            aiohttp.ClientSession() as client,
        ):
            for name in ("llama", "gpt-3.5-turbo"):
                async with client.get(router.url + "/v1/models/" + name) as response:
                    assert response.status == 200
                    card = await response.json()
                assert card["id"] == name
                assert card["object"] == "model"
                assert card["root"] == "llama"
            async with client.get(router.url + "/v1/models/gpt-4o") as response:
                assert response.status == 404
                error = (await response.json())["error"]
            assert error["code"] == "model_not_found"
            assert error["request_id"] == response.headers["X-Request-ID"]
            bodies = []
            for path in ("/health", "/healthz"):
                async with client.get(router.url + path) as response:
                    assert response.status == 200
                    bodies.append(await response.json())
            assert bodies[0] == bodies[1]
            assert bodies[0]["status"] == "ok"

    run(scenario())


@pytest.mark.parametrize("accept_any", [True, False])
def test_accept_any_model_name(accept_any: bool) -> None:
    async def scenario() -> None:
        cfg = config(accept_any_model_name=accept_any)
        async with (
            FakeBackend(Mode.JSON) as backend,
            RouterServer(config(backend.url, accept_any_model_name=accept_any)) as router,
            aiohttp.ClientSession() as client,
        ):
            assert cfg.accept_any_model_name is accept_any
            body = {**BODIES["/v1/chat/completions"], "model": "gpt-4o"}
            async with client.post(router.url + "/v1/chat/completions", json=body) as response:
                status = response.status
                answer = await response.json()
            async with client.get(router.url + "/v1/models/gpt-4o") as response:
                card_status = response.status
            if accept_any:
                assert status == 200
                assert backend.requests[-1].json() == {**body, "model": "llama"}
                assert card_status == 200
                # Metrics keep the served name: any name must not become a label.
                chat = [line for line in router.log_lines() if line["path"] != "/v1/models/gpt-4o"]
                assert chat[-1]["model"] == "llama"
            else:
                assert status == 404
                assert answer["error"]["code"] == "model_not_found"
                assert backend.requests == []
                assert card_status == 404

    run(scenario())
