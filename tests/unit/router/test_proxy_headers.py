"""Headers across the proxy: X-Forwarded-* to the engine; one Date and no engine Server back."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

import pytest

from llmservice.router.config import RouterConfig

from .backends import FakeBackend
from .conftest import CHAT, RouterServer, config, run
from .test_http_limits import connect, read_response

CHAT_BODY = json.dumps(CHAT).encode()


def chat_request(*extra: bytes) -> bytes:
    return (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: r\r\nContent-Type: application/json\r\n"
        + b"".join(line + b"\r\n" for line in extra)
        + b"Content-Length: %d\r\n\r\n" % len(CHAT_BODY)
        + CHAT_BODY
    )


async def forwarded_headers(cfg: RouterConfig, *extra: bytes) -> dict[str, str]:
    """The headers the engine received for one chat request carrying `extra` lines."""
    async with FakeBackend() as backend:
        cfg = replace(cfg, discovery=config(backend.url).discovery)
        async with RouterServer(cfg) as server:
            reader, writer = await connect(server)
            writer.write(chat_request(*extra))
            status, _, _ = await read_response(reader)
            writer.close()
        assert status == 200
        (received,) = backend.requests
        return received.headers


def test_the_client_address_and_scheme_are_sent_upstream() -> None:
    headers = run(forwarded_headers(config()))
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"


def test_an_untrusted_clients_forwarded_headers_are_replaced() -> None:
    spoofed = [
        b"X-Forwarded-For: 6.6.6.6",
        b"X-Forwarded-Proto: https",
        b"X-Forwarded-Host: evil.example",
        b"X-Forwarded-Port: 443",
        b"Forwarded: for=6.6.6.6",
    ]
    headers = run(forwarded_headers(config(), *spoofed))
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert "x-forwarded-host" not in headers
    assert "x-forwarded-port" not in headers
    assert "forwarded" not in headers


def test_a_trusted_proxys_forwarded_headers_pass_on_with_its_address_appended() -> None:
    lines = [
        b"X-Forwarded-For: 203.0.113.7",
        b"X-Forwarded-For: 10.1.2.3",
        b"X-Forwarded-Proto: https",
        b"X-Forwarded-Host: chat.example",
    ]
    headers = run(forwarded_headers(config(trusted_proxies=("127.0.0.0/8",)), *lines))
    assert headers["x-forwarded-for"] == "203.0.113.7, 10.1.2.3, 127.0.0.1"
    assert headers["x-forwarded-proto"] == "https"
    assert headers["x-forwarded-host"] == "chat.example"


def test_a_proxy_outside_the_trusted_networks_is_not_trusted() -> None:
    cfg = config(trusted_proxies=("10.0.0.0/8", "::1/128"))
    headers = run(forwarded_headers(cfg, b"X-Forwarded-For: 6.6.6.6"))
    assert headers["x-forwarded-for"] == "127.0.0.1"


def test_a_trusted_proxy_that_is_not_an_ip_network_is_refused() -> None:
    with pytest.raises(ValueError, match="not an IP network"):
        config(trusted_proxies=("proxy.example",))


@asynccontextmanager
async def engine_with_banner() -> AsyncIterator[str]:
    """An engine that answers every request with its own Date and Server headers."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        await reader.readexactly(length)
        body = b'{"id":"x","choices":[]}'
        writer.write(
            b"HTTP/1.1 200 OK\r\ndate: Thu, 01 Jan 1970 00:00:00 GMT\r\nserver: uvicorn\r\n"
            b"access-control-allow-origin: *\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n" % len(body) + body
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()


def test_responses_carry_one_date_and_no_engine_server_or_cors_headers() -> None:
    async def scenario() -> None:
        async with engine_with_banner() as url, RouterServer(config(url)) as server:
            reader, writer = await connect(server)
            writer.write(chat_request(b"Origin: https://app.example"))
            status, headers, _ = await read_response(reader)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: r\r\n\r\n")
            _, local, _ = await read_response(reader)
            writer.close()
            assert status == 200
            assert len(headers["date"]) == 1
            assert headers["date"] != ["Thu, 01 Jan 1970 00:00:00 GMT"]  # the router's own
            assert "server" not in headers
            assert "access-control-allow-origin" not in headers  # CORS is off
            assert len(local["date"]) == 1
            assert "server" not in local

    run(scenario())
