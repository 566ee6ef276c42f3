"""Scale from zero, the router's part: with ``cold_start_timeout`` a request that arrives
while no replica exists is held in the queue (visible in ``llmservice_router_queued``) until
one is routable, or answered 503 ``cold_start_timeout`` with ``Retry-After``; without it the
router answers 503 at once, as before."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace

import aiohttp

from llmservice.router.config import AdmissionConfig

from .backends import FakeBackend, Mode
from .conftest import CHAT, MutableDiscovery, RouterServer, config, run, until


def holding(seconds: float) -> AdmissionConfig:
    return replace(AdmissionConfig(), cold_start_timeout=seconds)


async def queued(client: aiohttp.ClientSession, url: str) -> float:
    """The router's ``llmservice_router_queued``, summed over keys, read from /metrics."""
    async with client.get(url + "/metrics") as response:
        text = await response.text()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("llmservice_router_queued{")
    )


def queued_is(client: aiohttp.ClientSession, url: str, count: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await queued(client, url) == count

    return check


def test_requests_at_zero_are_held_until_a_replica_joins_and_all_answered() -> None:
    async def scenario() -> None:
        async with FakeBackend(Mode.JSON) as backend:
            discovery = MutableDiscovery([])
            cfg = config(admission=holding(30.0))
            async with (
                RouterServer(cfg, discovery=discovery) as router,
                aiohttp.ClientSession() as client,
            ):
                # At zero the router stays ready: the Service must keep sending it requests.
                async with client.get(router.url + "/readyz") as response:
                    assert response.status == 200
                    assert "held" in (await response.json())["reason"]

                async def ask() -> int:
                    async with client.post(
                        router.url + "/v1/chat/completions", json=CHAT
                    ) as response:
                        await response.read()
                        return response.status

                asks = [asyncio.create_task(ask()) for _ in range(20)]
                await until(queued_is(client, router.url, 20), within=10)
                assert not any(task.done() for task in asks)
                discovery.set([backend.url])
                assert await asyncio.gather(*asks) == [200] * 20
                assert len(backend.requests) == 20
                assert await queued(client, router.url) == 0

    run(scenario())


def test_a_hold_that_outlasts_the_timeout_gets_503_with_retry_after() -> None:
    async def scenario() -> None:
        cfg = config(admission=holding(0.3))
        async with (
            RouterServer(cfg, discovery=MutableDiscovery([])) as router,
            aiohttp.ClientSession() as client,
        ):
            async with client.post(router.url + "/v1/chat/completions", json=CHAT) as response:
                body = await response.json()
                assert response.status == 503
                assert response.headers["Retry-After"] == "1"
                assert body["error"]["code"] == "cold_start_timeout"
                assert body["error"]["request_id"] == response.headers["X-Request-ID"]
            assert await queued(client, router.url) == 0
            router.app.access_log.flush()
            chats = [line for line in router.log_lines() if line["path"] != "/metrics"]
            assert [line["cause"] for line in chats] == ["cold_start_timeout"]

    run(scenario())


def test_a_client_that_leaves_while_held_leaves_the_queue() -> None:
    async def scenario() -> None:
        cfg = config(admission=holding(30.0))
        async with (
            RouterServer(cfg, discovery=MutableDiscovery([])) as router,
            aiohttp.ClientSession() as client,
        ):
            post = client.post(router.url + "/v1/chat/completions", json=CHAT)
            task = asyncio.create_task(post.__aenter__())
            await until(queued_is(client, router.url, 1), within=10)
            task.cancel()
            await until(queued_is(client, router.url, 0), within=10)

    run(scenario())


def test_without_a_hold_no_replica_is_503_at_once_and_not_ready() -> None:
    async def scenario() -> None:
        async with (
            RouterServer(config(), discovery=MutableDiscovery([])) as router,
            aiohttp.ClientSession() as client,
        ):
            async with client.get(router.url + "/readyz") as response:
                assert response.status == 503
            async with client.post(router.url + "/v1/chat/completions", json=CHAT) as response:
                body = await response.json()
                assert response.status == 503
                assert body["error"]["code"] == "no_ready_replica"
                assert "Retry-After" not in response.headers

    run(scenario())
