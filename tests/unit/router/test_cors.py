"""CORS: preflights answered without a key, headers on every answer for allowed origins only."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Any

import pytest

from llmservice.router.auth import parse_api_keys
from llmservice.router.config import AdmissionConfig, CorsConfig, RouterConfig
from llmservice.router.cors import RATE_LIMIT_HEADERS

from .backends import FakeBackend, Mode
from .conftest import CHAT, RouterServer, config, run
from .test_http_limits import connect

APP = "https://chat.example.com"
KEY = "sk-browser-0123456789abcdef"
KEYS = f"keys:\n  - name: browser\n    key: {KEY}\n"
BODY = json.dumps(CHAT).encode()

Response = tuple[int, dict[str, list[str]], bytes]


def request(method: str, path: str, *headers: str, body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: router", *headers]
    if body:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def preflight(origin: str = APP) -> bytes:
    return request(
        "OPTIONS",
        "/v1/chat/completions",
        f"Origin: {origin}",
        "Access-Control-Request-Method: POST",
        "Access-Control-Request-Headers: authorization, content-type",
    )


def chat(*headers: str) -> bytes:
    return request("POST", "/v1/chat/completions", *headers, body=BODY)


async def exchange(
    cfg: RouterConfig, *requests: bytes, keys: bool = False, **backend: Any
) -> list[Response]:
    """Send `requests` on one connection to a router before a FakeBackend; their answers."""
    async with FakeBackend(**backend) as engine:
        cfg = replace(cfg, discovery=config(engine.url).discovery)
        api_keys = parse_api_keys(KEYS) if keys else None
        async with RouterServer(cfg, api_keys=api_keys) as server:
            reader, writer = await connect(server)
            answers = []
            for raw in requests:
                writer.write(raw)
                answers.append(await read_stream_or_response(reader))
            writer.close()
            return answers


async def read_stream_or_response(reader: asyncio.StreamReader) -> Response:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers.setdefault(name.strip().lower(), []).append(value.strip())
    status = int(lines[0].split(" ")[1])
    if headers.get("transfer-encoding") == ["chunked"]:
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n"))[:-2], 16)
            body += (await reader.readexactly(size + 2))[:-2]
            if size == 0:
                return status, headers, body
    length = int(headers.get("content-length", ["0"])[0])
    return status, headers, await reader.readexactly(length)


def on(*origins: str, **changes: Any) -> RouterConfig:
    return config(cors=CorsConfig(allowed_origins=origins or (APP,), **changes))


def cors_headers(headers: dict[str, list[str]]) -> dict[str, list[str]]:
    return {name: value for name, value in headers.items() if name.startswith("access-control-")}


def test_a_preflight_is_answered_204_without_a_key() -> None:
    ((status, headers, body),) = run(exchange(on(max_age=600), preflight(), keys=True))
    assert (status, body) == (204, b"")
    assert headers["access-control-allow-origin"] == [APP]
    assert headers["access-control-allow-methods"] == ["GET, POST, OPTIONS"]
    assert headers["access-control-allow-headers"] == [
        "Authorization, Content-Type, X-Session-ID, X-Request-ID"
    ]
    assert headers["access-control-max-age"] == ["600"]
    assert headers["vary"] == ["Origin"]
    assert "content-length" not in headers


def test_a_preflight_from_another_origin_gets_no_cors_headers() -> None:
    ((status, headers, _),) = run(exchange(on(), preflight("https://evil.example"), keys=True))
    assert status == 204
    assert cors_headers(headers) == {}


def test_allowed_origins_see_cors_headers_on_a_200_and_others_do_not() -> None:
    ok, other, none = run(
        exchange(on(), chat(f"Origin: {APP}"), chat("Origin: https://evil.example"), chat())
    )
    status, headers, _ = ok
    assert status == 200
    assert headers["access-control-allow-origin"] == [APP]
    exposed = headers["access-control-expose-headers"][0].split(", ")
    assert exposed == ["X-Session-ID", "X-Request-ID", "Retry-After", *RATE_LIMIT_HEADERS]
    assert headers["vary"] == ["Origin"]
    assert "access-control-allow-methods" not in headers  # only preflights list them
    for status, headers, _ in (other, none):
        assert status == 200
        assert cors_headers(headers) == {}
        assert headers["vary"] == ["Origin"]


def test_any_origin_is_answered_with_a_star_and_no_vary() -> None:
    ((status, headers, _), (_, pre, _)) = run(
        exchange(on("*"), chat("Origin: https://anyone.example"), preflight("https://x.example"))
    )
    assert status == 200
    assert headers["access-control-allow-origin"] == ["*"]
    assert "vary" not in headers
    assert pre["access-control-allow-origin"] == ["*"]


def test_a_streamed_response_carries_the_cors_headers() -> None:
    body = json.dumps({**CHAT, "stream": True}).encode()
    raw = request("POST", "/v1/chat/completions", f"Origin: {APP}", body=body)
    ((status, headers, streamed),) = run(exchange(on(), raw, mode=Mode.STREAM))
    assert status == 200
    assert headers["content-type"][0].startswith("text/event-stream")
    assert headers["access-control-allow-origin"] == [APP]
    assert b"data: [DONE]" in streamed


def test_a_401_carries_the_cors_headers_so_the_script_can_read_it() -> None:
    ((status, headers, body),) = run(exchange(on(), chat(f"Origin: {APP}"), keys=True))
    assert status == 401
    assert headers["www-authenticate"] == ["Bearer"]
    assert headers["access-control-allow-origin"] == [APP]
    assert json.loads(body)["error"]["code"]


def test_a_429_carries_the_cors_headers_and_exposes_its_rate_limit_headers() -> None:
    cfg = replace(on(), admission=AdmissionConfig(requests_per_minute=1))
    first, limited = run(exchange(cfg, chat(f"Origin: {APP}"), chat(f"Origin: {APP}")))
    assert first[0] == 200
    status, headers, _ = limited
    assert status == 429
    assert headers["access-control-allow-origin"] == [APP]
    exposed = headers["access-control-expose-headers"][0].lower().split(", ")
    assert "retry-after" in headers
    sent = [name for name in headers if name.startswith("x-ratelimit-")]
    assert sent
    assert set(sent) <= set(exposed)


def test_with_cors_off_nothing_changes() -> None:
    pre, ok = run(exchange(config(), preflight(), chat(f"Origin: {APP}")))
    assert pre[0] == 405  # no preflight handling: the route's own answer
    assert cors_headers(pre[1]) == {}
    assert ok[0] == 200
    assert cors_headers(ok[1]) == {}
    assert "vary" not in ok[1]
    ((status, headers, _),) = run(exchange(config(), preflight(), keys=True))
    assert status == 401
    assert cors_headers(headers) == {}


@pytest.mark.parametrize(
    "changes",
    [
        {"allowed_origins": ("chat.example.com",)},
        {"allowed_origins": ("https://chat.example.com/",)},
        {"max_age": -1},
    ],
)
def test_bad_cors_settings_are_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="CORS"):
        CorsConfig(**changes)
