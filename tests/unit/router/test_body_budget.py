"""The router's budget of request body bytes held at once, on real sockets: clients that
send large bodies slowly fill it, the next large body gets 503 ``router_busy`` with
``Retry-After`` (not the router's memory limit), and the budget comes back when they go."""

from __future__ import annotations

import asyncio

import aiohttp

from .backends import FakeBackend, Mode
from .conftest import RouterServer, config, run, until

MIB = 1 << 20


async def hold_a_body(port: int, length: int, sent: int) -> asyncio.StreamWriter:
    """A connection that declares ``length`` body bytes, sends ``sent`` of them and waits."""
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: r\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    )
    writer.write(head.encode() + b" " * sent)
    await writer.drain()
    return writer


def test_bodies_over_the_budget_get_503_and_the_budget_comes_back() -> None:
    async def scenario() -> None:
        async with FakeBackend(Mode.JSON) as backend:
            cfg = config(backend.url, max_body_bytes=MIB, max_buffered_body_bytes=2 * MIB)
            async with RouterServer(cfg) as router, aiohttp.ClientSession() as client:
                app = router.app
                held = [await hold_a_body(router.port, MIB, 900 * 1024) for _ in range(2)]
                await until(lambda: app.body_bytes_held == 2 * 900 * 1024)

                body = b'{"model":"llama","messages":[{"role":"user","content":"hi"}]}'
                padded = body[:-1] + b"," + b'"pad":"' + b"x" * (300 * 1024) + b'"}'
                async with client.post(
                    router.url + "/v1/chat/completions",
                    data=padded,
                    headers={"Content-Type": "application/json"},
                ) as response:
                    error = (await response.json())["error"]
                    assert response.status == 503
                    assert response.headers["Retry-After"] == "1"
                assert error["code"] == "router_busy"
                assert error["request_id"] == response.headers["X-Request-ID"]
                assert backend.requests == []
                # A small body still fits beside the held ones.
                async with client.post(
                    router.url + "/v1/chat/completions",
                    data=body,
                    headers={"Content-Type": "application/json"},
                ) as response:
                    assert response.status == 200

                for writer in held:
                    writer.close()
                await until(lambda: app.body_bytes_held == 0)
                async with client.post(
                    router.url + "/v1/chat/completions",
                    data=padded,
                    headers={"Content-Type": "application/json"},
                ) as response:
                    assert response.status == 200
                assert len(backend.requests) == 2

    run(scenario())


def test_one_largest_body_always_fits_whatever_the_budget() -> None:
    async def scenario() -> None:
        async with FakeBackend(Mode.JSON) as backend:
            cfg = config(backend.url, max_body_bytes=MIB, max_buffered_body_bytes=1024)
            async with RouterServer(cfg) as router, aiohttp.ClientSession() as client:
                pad = b"x" * (MIB - 200)
                body = b'{"model":"llama","messages":[{"role":"user","content":"' + pad + b'"}]}'
                async with client.post(
                    router.url + "/v1/chat/completions",
                    data=body,
                    headers={"Content-Type": "application/json"},
                ) as response:
                    assert response.status == 200
                assert router.app.body_bytes_held == 0

    run(scenario())
