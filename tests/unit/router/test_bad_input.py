"""Every client mistake is a 4xx with an OpenAI-style error and the request id; never a 500."""

from __future__ import annotations

import asyncio
import io
import json

import aiohttp
import pytest

from llmservice.router.config import DEFAULT_MAX_BODY_BYTES
from llmservice.router.payloads import MAX_ELEMENTS

from .backends import FakeBackend, Mode
from .conftest import CHAT, MutableDiscovery, RouterServer, config, run

CASES = [
    # (name, method, path, headers, body, status, code, param)
    ("malformed json", "POST", "/v1/chat/completions", {}, b'{"model": "llama",', 400,
     "invalid_request", None),
    ("not an object", "POST", "/v1/chat/completions", {}, b"[1, 2]", 400, "invalid_request",
     None),
    ("not utf-8", "POST", "/v1/chat/completions", {}, b"\xff\xfe{}", 400, "invalid_request",
     None),
    ("missing messages", "POST", "/v1/chat/completions", {}, b'{"model": "llama"}', 400,
     "invalid_request", "messages"),
    ("empty messages", "POST", "/v1/chat/completions", {},
     b'{"model": "llama", "messages": []}', 400, "invalid_request", "messages"),
    ("messages not objects", "POST", "/v1/chat/completions", {},
     b'{"model": "llama", "messages": ["hi"]}', 400, "invalid_request", "messages"),
    ("missing prompt", "POST", "/v1/completions", {}, b'{"model": "llama"}', 400,
     "invalid_request", "prompt"),
    ("missing input", "POST", "/v1/embeddings", {}, b'{"model": "llama"}', 400,
     "invalid_request", "input"),
    ("missing model where vLLM needs one", "POST", "/v1/messages", {},
     b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": 5}', 400,
     "invalid_request", "model"),
    ("model not a string", "POST", "/v1/chat/completions", {},
     b'{"model": ' + b"9" * 5000 + b', "messages": [{"role": "user", "content": "x"}]}', 400,
     "invalid_request", "model"),
    ("deep nesting", "POST", "/v1/chat/completions", {},
     b'{"model": "llama", "x": ' + b"[" * 3000 + b"]" * 3000 + b"}", 400, "invalid_request",
     None),
    ("lone surrogate", "POST", "/v1/chat/completions", {},
     b'{"model": "llama", "messages": [{"role": "user", "content": "\\ud800"}]}', 400,
     "invalid_request", None),
    ("bad utf-8 in a string", "POST", "/v1/chat/completions", {},
     b'{"model": "llama", "messages": [{"role": "user", "content": "\xc3\x28"}]}', 400,
     "invalid_request", None),
    ("missing tokens", "POST", "/detokenize", {}, b'{"model": "llama"}', 400,
     "invalid_request", "tokens"),
    ("missing query", "POST", "/v1/rerank", {}, b'{"documents": ["a"]}', 400,
     "invalid_request", "query"),
    ("unknown model id", "GET", "/v1/models/gpt-4", {}, b"", 404, "model_not_found", "model"),
    ("unknown model", "POST", "/v1/chat/completions", {},
     b'{"model": "gpt-4", "messages": [{"role": "user", "content": "x"}]}', 404,
     "model_not_found", "model"),
    ("form content type", "POST", "/v1/chat/completions",
     {"Content-Type": "application/x-www-form-urlencoded"}, b"a=b", 415,
     "unsupported_media_type", None),
    ("text content type", "POST", "/v1/chat/completions", {"Content-Type": "text/plain"},
     json.dumps(CHAT).encode(), 415, "unsupported_media_type", None),
    ("oversized body", "POST", "/v1/chat/completions", {}, b"x" * 20000, 413,
     "payload_too_large", None),
    ("get on a post route", "GET", "/v1/chat/completions", {}, b"", 405,
     "method_not_allowed", None),
    ("post on a get route", "POST", "/v1/models", {}, b"{}", 405, "method_not_allowed", None),
    ("unknown path", "GET", "/v2/nothing", {}, b"", 404, "not_found", None),
    ("api chat without messages", "POST", "/api/chat", {}, b'{"temperature": 1}', 400,
     "invalid_request", "messages"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("method", "path", "headers", "body", "status", "code", "param"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_bad_input_is_a_4xx_openai_error(
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes,
    status: int,
    code: str,
    param: str | None,
) -> None:
    async def scenario() -> None:
        async with (
            FakeBackend(Mode.JSON) as backend,
            RouterServer(config(backend.url, max_body_bytes=16384)) as router,
            aiohttp.ClientSession() as client,
        ):
            sent = {"Content-Type": "application/json", "X-Request-ID": "req-42", **headers}
            async with client.request(
                method, router.url + path, data=body, headers=sent
            ) as response:
                assert response.status == status
                assert response.headers["X-Request-ID"] == "req-42"
                error = (await response.json())["error"]
            assert error["code"] == code
            assert error["param"] == param
            assert error["request_id"] == "req-42"
            assert error["message"]
            assert error["type"] in ("invalid_request_error",)
            assert backend.requests == []

    run(scenario())


def test_oversized_chunked_body_is_413_without_content_length() -> None:
    async def scenario() -> None:
        async with RouterServer(config(max_body_bytes=1024)) as router:
            reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
            writer.write(
                b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n"
                b"content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
            )
            for _ in range(4):
                writer.write(b"200\r\n" + b"x" * 512 + b"\r\n")
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 413")
            writer.close()
            await writer.wait_closed()

    run(scenario())


def test_no_ready_replica_is_503() -> None:
    async def scenario() -> None:
        discovery = MutableDiscovery([])
        async with (
            RouterServer(config(), discovery=discovery) as router,
            aiohttp.ClientSession() as client,
        ):
            async with client.post(router.url + "/v1/chat/completions", json=CHAT) as response:
                assert response.status == 503
                error = (await response.json())["error"]
            assert error["code"] == "no_ready_replica"
            assert error["type"] == "server_error"
            async with client.get(router.url + "/readyz") as response:
                assert response.status == 503

    run(scenario())


def test_invalid_request_id_is_replaced() -> None:
    async def scenario() -> None:
        async with (
            RouterServer(config()) as router,
            aiohttp.ClientSession() as client,
            client.get(
                router.url + "/nothing", headers={"X-Request-ID": "bad id with spaces"}
            ) as response,
        ):
            given = response.headers["X-Request-ID"]
            assert given != "bad id with spaces"
            assert (await response.json())["error"]["request_id"] == given

    run(scenario())


def _dense(unit: bytes, count: int) -> bytes:
    return b'{"model": "llama", "messages": [{"role": "user", "content": "x"}], "x": [' + (
        unit * count + b"0]}"
    )


def test_largest_worst_case_bodies_in_parallel_leave_the_router_answering() -> None:
    """Correctness only: the bound on /healthz latency is measured in bench/ (README)."""
    size = DEFAULT_MAX_BODY_BYTES
    bodies = [
        _dense(b"0,", MAX_ELEMENTS - 10),  # as dense as allowed: parsed and forwarded
        _dense(b"{},", MAX_ELEMENTS - 10),
        _dense(b"0,", (size - 100) // 2),  # full size and denser: 413
        b'{"model": "llama", "messages": [{"role": "user", "content": "'
        + b"a" * (size - 100)
        + b'"}]}',
    ]

    async def scenario() -> None:
        async with (
            FakeBackend(Mode.STATUS, status=200) as backend,
            RouterServer(config(backend.url)) as router,
            aiohttp.ClientSession() as client,
        ):
            done = asyncio.Event()
            probes: list[int] = []

            async def probe() -> None:
                async with aiohttp.ClientSession() as own:
                    while not done.is_set():
                        async with own.get(router.url + "/healthz") as response:
                            probes.append(response.status)
                        await asyncio.sleep(0.01)

            async def upload(body: bytes) -> int:
                headers = {"Content-Type": "application/json", "X-Request-ID": "big-1"}
                async with client.post(
                    router.url + "/v1/chat/completions", data=io.BytesIO(body), headers=headers
                ) as response:
                    if response.status >= 400:
                        error = (await response.json())["error"]
                        assert error["request_id"] == "big-1"
                    return response.status

            prober = asyncio.create_task(probe())
            statuses = await asyncio.gather(*(upload(body) for body in bodies * 2))
            done.set()
            await prober
            assert statuses == [200, 200, 413, 200] * 2
            assert probes
            assert set(probes) == {200}

    run(scenario())


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/v1/chat/completions", 405), ("POST", "/nothing", 404), ("POST", "/healthz", 405)],
)
def test_an_error_before_the_body_is_read_still_reaches_a_client_that_sends_it_all(
    method: str, path: str, status: int
) -> None:
    # The client writes its whole body before reading: the router must read it (within its
    # limit) before answering and closing, or the reset can destroy the answer.
    body = b'{"model": "llama", "x": "' + b"a" * 200_000 + b'"}'

    async def scenario() -> None:
        async with RouterServer(config(max_body_bytes=1 << 20)) as router:
            reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
            writer.write(
                f"{method} {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n"
                f"content-type: application/json\r\ncontent-length: {len(body)}\r\n"
                f"x-request-id: early-1\r\n\r\n".encode()
                + body
            )
            await writer.drain()
            answer = await reader.read()
            writer.close()
            head, _, payload = answer.partition(b"\r\n\r\n")
            assert head.startswith(f"HTTP/1.1 {status}".encode())
            assert json.loads(payload)["error"]["request_id"] == "early-1"

    run(scenario())
