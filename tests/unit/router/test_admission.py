"""Admission on real sockets: every 429 with its headers, caps, the queue, slot accounting."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from dataclasses import replace
from typing import Any

import aiohttp
import openai
import pytest

from llmservice.router.auth import ApiKeys
from llmservice.router.clients import Client
from llmservice.router.config import AdmissionConfig, RouterConfig

from .backends import FakeBackend, Mode
from .conftest import CHAT, RouterServer, config, run, until

KEYS = {
    "high": "sk-high-0123456789abcdef",
    "low": "sk-low-0123456789abcdef",
    "team": "sk-team-0123456789abcdef",
}
STREAM = {**CHAT, "stream": True}
RESET = re.compile(r"^(\d+h)?(\d+m)?\d+(\.\d+)?s$|^\d+ms$")


def api_keys(*clients: Client) -> ApiKeys:
    return ApiKeys({hashlib.sha256(KEYS[c.name].encode()).digest(): c for c in clients})


def admitting(*backends: str, **admission: Any) -> RouterConfig:
    return replace(config(*backends), admission=AdmissionConfig(**admission))


def auth(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[name]}"}


async def post(
    client: aiohttp.ClientSession, router: RouterServer, name: str | None, body: Any = CHAT
) -> tuple[int, dict[str, str], Any]:
    headers = auth(name) if name else {}
    async with client.post(
        router.url + "/v1/chat/completions", json=body, headers=headers
    ) as response:
        raw = await response.read()
        payload = json.loads(raw) if raw.startswith(b"{") else raw
        return response.status, dict(response.headers), payload


def metric(router: RouterServer, name: str, **labels: str) -> float:
    """The value of one sample in the router's /metrics (0 when absent)."""
    text = router.app.metrics.render().decode()
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            head, value = line.rsplit(" ", 1)
            got = head[len(name) :].strip("{}")
            if ",".join(sorted(got.split(","))) == wanted or (not wanted and not got):
                return float(value)
    return 0.0


def assert_429(status: int, headers: dict[str, str], body: Any, code: str, kind: str) -> int:
    assert status == 429, body
    assert body["error"]["code"] == code
    assert body["error"]["type"] == kind
    assert body["error"]["message"]
    retry_after = headers["Retry-After"]
    assert retry_after.isdigit()
    assert int(retry_after) >= 1
    return int(retry_after)


def test_a_key_over_its_requests_per_minute_gets_429_with_openai_headers() -> None:
    async def scenario() -> None:
        keys = api_keys(Client("team", requests_per_minute=2))
        async with (
            FakeBackend(Mode.JSON) as backend,
            RouterServer(config(backend.url), api_keys=keys) as router,
            aiohttp.ClientSession() as client,
        ):
            for _ in range(2):
                status, headers, _ = await post(client, router, "team")
                assert status == 200
                # Only refusals carry the rate-limit headers: cheaper on the request path.
                assert "x-ratelimit-limit-requests" not in headers
            status, headers, body = await post(client, router, "team")
            retry_after = assert_429(status, headers, body, "rate_limit_requests", "requests")
            # Two a minute: the next one is back in 30 s, give or take the test's own time.
            assert 29 <= retry_after <= 30
            assert headers["x-ratelimit-limit-requests"] == "2"
            assert headers["x-ratelimit-remaining-requests"] == "0"
            assert RESET.match(headers["x-ratelimit-reset-requests"])
            assert "x-ratelimit-limit-tokens" not in headers
            assert len(backend.requests) == 2
            assert metric(router, "llmservice_router_rejected_total",
                          reason="rate_limit_requests", key="team") == 1  # fmt: skip
            await until(lambda: len(router.log_lines()) == 3)
            line = router.log_lines()[-1]
            assert (line["client"], line["status"], line["cause"]) == (
                "team", 429, "rate_limit_requests"
            )  # fmt: skip
            assert KEYS["team"] not in router.log.getvalue()

    run(scenario())


def test_a_key_over_its_tokens_per_minute_gets_429_once_its_usage_is_charged() -> None:
    async def scenario() -> None:
        keys = api_keys(Client("team", tokens_per_minute=10))
        async with (
            FakeBackend(Mode.JSON) as backend,  # answers with usage of 10 tokens
            RouterServer(config(backend.url), api_keys=keys) as router,
            aiohttp.ClientSession() as client,
        ):
            status, headers, _ = await post(client, router, "team")
            assert status == 200
            status, headers, body = await post(client, router, "team")
            retry_after = assert_429(status, headers, body, "rate_limit_tokens", "tokens")
            assert 5 <= retry_after <= 6  # one token of ten a minute is back in 6 s
            assert headers["x-ratelimit-limit-tokens"] == "10"
            assert headers["x-ratelimit-remaining-tokens"] == "0"
            assert RESET.match(headers["x-ratelimit-reset-tokens"])
            assert len(backend.requests) == 1
            tokens = "llmservice_router_key_tokens_total"
            assert metric(router, tokens, key="team", kind="prompt") == 7
            assert metric(router, tokens, key="team", kind="completion") == 3

    run(scenario())


def test_the_router_wide_limit_refuses_anonymous_requests_too() -> None:
    async def scenario() -> None:
        async with (
            FakeBackend(Mode.JSON) as backend,
            RouterServer(admitting(backend.url, requests_per_minute=1)) as router,
            aiohttp.ClientSession() as client,
        ):
            assert (await post(client, router, None))[0] == 200
            status, headers, body = await post(client, router, None)
            retry_after = assert_429(status, headers, body, "global_rate_limit", "requests")
            assert 59 <= retry_after <= 60
            assert headers["x-ratelimit-limit-requests"] == "1"
            assert metric(router, "llmservice_router_rejected_total",
                          reason="global_rate_limit", key="anonymous") == 1  # fmt: skip

    run(scenario())


async def occupy(
    client: aiohttp.ClientSession, router: RouterServer, name: str | None, count: int
) -> list[asyncio.Task[tuple[int, dict[str, str], Any]]]:
    tasks = [asyncio.create_task(post(client, router, name, STREAM)) for _ in range(count)]
    await asyncio.sleep(0)
    return tasks


def test_a_key_with_its_max_queued_waiting_gets_429() -> None:
    async def scenario() -> None:
        keys = api_keys(Client("team", max_queued=1), Client("high"))
        async with (
            FakeBackend(Mode.STREAM, chunks=1000, delay=0.05) as backend,
            RouterServer(
                admitting(backend.url, max_in_flight_per_replica=1), api_keys=keys
            ) as router,
            aiohttp.ClientSession() as client,
        ):
            running = await occupy(client, router, "team", 1)
            await until(lambda: backend.active == 1)
            waiting = await occupy(client, router, "team", 1)
            dispatcher = router.app.proxy.dispatcher
            await until(lambda: dispatcher.waiting == 1)
            status, headers, body = await post(client, router, "team")
            assert_429(status, headers, body, "key_queue_full", "requests")
            # Another key still queues.
            other = await occupy(client, router, "high", 1)
            await until(lambda: dispatcher.waiting == 2)
            assert metric(router, "llmservice_router_queued", key="team") == 1
            assert metric(router, "llmservice_router_queued", key="high") == 1
            assert metric(router, "llmservice_router_in_flight_limit", replica=backend.url) == 1
            for task in (*running, *waiting, *other):
                task.cancel()
            await asyncio.gather(*running, *waiting, *other, return_exceptions=True)
            await until(lambda: router.app.proxy.loads[backend.url] == 0)
            assert dispatcher.waiting == 0
            assert backend.peak == 1

    run(scenario())


def test_a_full_router_queue_gets_429() -> None:
    async def scenario() -> None:
        async with (
            FakeBackend(Mode.STREAM, chunks=1000, delay=0.05) as backend,
            RouterServer(
                admitting(backend.url, max_in_flight_per_replica=1, max_queued=1)
            ) as router,
            aiohttp.ClientSession() as client,
        ):
            tasks = await occupy(client, router, None, 1)
            await until(lambda: backend.active == 1)
            tasks += await occupy(client, router, None, 1)
            await until(lambda: router.app.proxy.dispatcher.waiting == 1)
            status, headers, body = await post(client, router, None)
            assert_429(status, headers, body, "queue_full", "requests")
            assert metric(router, "llmservice_router_rejected_total",
                          reason="queue_full", key="anonymous") == 1  # fmt: skip
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    run(scenario())


def test_a_request_that_waits_the_queue_timeout_gets_429() -> None:
    async def scenario() -> None:
        async with (
            FakeBackend(Mode.STALL) as backend,
            RouterServer(
                admitting(backend.url, max_in_flight_per_replica=1, queue_timeout=0.3)
            ) as router,
            aiohttp.ClientSession() as client,
        ):
            stalled = await occupy(client, router, None, 1)
            await until(lambda: backend.active == 1)
            started = time.monotonic()
            status, headers, body = await post(client, router, None)
            assert time.monotonic() - started >= 0.3
            assert_429(status, headers, body, "queue_timeout", "requests")
            assert router.app.proxy.dispatcher.waiting == 0
            assert len(backend.requests) == 1
            for task in stalled:
                task.cancel()
            await asyncio.gather(*stalled, return_exceptions=True)

    run(scenario())


def test_queue_refusals_give_the_requests_back_to_the_key() -> None:
    async def scenario() -> None:
        keys = api_keys(Client("team", requests_per_minute=3, max_queued=1))
        async with (
            FakeBackend(Mode.STREAM, chunks=1000, delay=0.05) as backend,
            RouterServer(
                admitting(backend.url, max_in_flight_per_replica=1), api_keys=keys
            ) as router,
            aiohttp.ClientSession() as client,
        ):
            tasks = await occupy(client, router, "team", 1)
            await until(lambda: backend.active == 1)
            tasks += await occupy(client, router, "team", 1)
            await until(lambda: router.app.proxy.dispatcher.waiting == 1)
            for _ in range(3):  # refused by the queue, not counted against the key's limit
                status, headers, _ = await post(client, router, "team")
                assert status == 429
                assert headers["x-ratelimit-remaining-requests"] == "1"
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    run(scenario())


def test_no_replica_ever_exceeds_its_cap() -> None:
    async def scenario() -> None:
        async with (
            FakeBackend(Mode.STREAM, chunks=3, delay=0.02) as one,
            FakeBackend(Mode.STREAM, chunks=3, delay=0.02) as two,
            RouterServer(admitting(one.url, two.url, max_in_flight_per_replica=2)) as router,
            aiohttp.ClientSession() as client,
        ):
            results = await asyncio.gather(
                *(post(client, router, None, {**STREAM, "user": f"u{i}"}) for i in range(30))
            )
            assert [status for status, _, _ in results] == [200] * 30
            assert (one.peak, two.peak) == (2, 2)
            assert len(one.requests) + len(two.requests) == 30
            assert router.app.proxy.loads == {one.url: 0, two.url: 0}

    run(scenario())


def test_forty_concurrent_requests_on_one_slot_are_served_one_at_a_time_by_priority() -> None:
    async def scenario() -> None:
        keys = api_keys(Client("high", priority=10), Client("low", priority=1))
        cfg = admitting("", max_in_flight_per_replica=1, engine_priority=True)
        # 0.1 s a request: the 20 "high" ones must be queued while the "low" ones are still
        # waiting, which takes the test's client a while on a loaded machine.
        async with FakeBackend(Mode.STREAM, chunks=2, delay=0.05) as backend:
            cfg = replace(cfg, discovery=replace(cfg.discovery, static_backends=(backend.url,)))
            async with (
                RouterServer(cfg, api_keys=keys) as router,
                aiohttp.ClientSession() as client,
            ):
                dispatcher = router.app.proxy.dispatcher
                # The client's own priority is replaced by its key's.
                low = [{**STREAM, "priority": -1000} for _ in range(20)]
                tasks = [asyncio.create_task(post(client, router, "low", body)) for body in low]
                await until(lambda: dispatcher.queue.waiting("low") == 19)
                tasks += await occupy(client, router, "high", 20)
                await until(lambda: dispatcher.queue.waiting("high") == 20)
                results = await asyncio.gather(*tasks)
                assert [status for status, _, _ in results] == [200] * 40
                assert backend.peak == 1
                order = [request.json()["priority"] for request in backend.requests]
                assert sorted(order) == [-10] * 20 + [-1] * 20
                # After the first, the queue had 19 "low" then 20 "high" waiting: "high" got
                # ten dispatches for each one of "low" while both waited.
                assert order[1:12].count(-10) >= 9
                assert order[1:23].count(-10) >= 18
                assert router.app.proxy.loads == {backend.url: 0}

    run(scenario())


def test_slots_come_back_after_disconnects_and_upstream_failures() -> None:
    async def scenario() -> None:
        async with (
            FakeBackend(Mode.STREAM, chunks=1000, delay=0.05) as backend,
            RouterServer(
                admitting(backend.url, max_in_flight_per_replica=1, queue_timeout=2)
            ) as router,
            aiohttp.ClientSession() as client,
        ):
            proxy = router.app.proxy
            # A client gone while streaming, and one gone while waiting in the queue.
            streaming = await occupy(client, router, None, 1)
            await until(lambda: backend.active == 1)
            queued = await occupy(client, router, None, 1)
            await until(lambda: proxy.dispatcher.waiting == 1)
            queued[0].cancel()
            await asyncio.gather(*queued, return_exceptions=True)
            await until(lambda: proxy.dispatcher.waiting == 0)
            streaming[0].cancel()
            await asyncio.gather(*streaming, return_exceptions=True)
            await until(lambda: proxy.loads[backend.url] == 0 and backend.active == 0)
            # Failures: an error status, a broken stream, a refused connection.
            backend.chunks = 3
            for mode, expected in ((Mode.STATUS, 500), (Mode.DIE_MID_STREAM, 200),
                                   (Mode.CLOSE, 502)):  # fmt: skip
                backend.mode = mode
                status, _, _ = await post(client, router, None, STREAM)
                assert status == expected
                assert proxy.loads[backend.url] == 0
            # The one slot is free: a request goes straight through, without waiting.
            backend.mode, backend.chunks = Mode.STREAM, 2
            started = time.monotonic()
            assert (await post(client, router, None, STREAM))[0] == 200
            assert time.monotonic() - started < 1.0
            assert proxy.dispatcher.blocked == set()
            lines = router.log_lines()
            assert sum(line["status"] == 499 for line in lines) == 2

    run(scenario())


def test_the_openai_sdk_retries_after_a_429_and_succeeds() -> None:
    async def scenario() -> None:
        keys = api_keys(Client("team", requests_per_minute=60))  # one a second, burst 60
        async with (
            FakeBackend(Mode.JSON) as backend,
            RouterServer(config(backend.url), api_keys=keys) as router,
            openai.AsyncOpenAI(
                base_url=router.url + "/v1", api_key=KEYS["team"], max_retries=2
            ) as sdk,
        ):
            # Spend the burst, so the next request is refused with Retry-After: 1.
            limiter = router.app.limiter
            team = next(iter(keys.clients.values()))
            while limiter.admit(team, router.app.clock()) is None:
                pass
            started = time.monotonic()
            reply = await sdk.chat.completions.with_raw_response.create(
                model="llama", messages=[{"role": "user", "content": "hi"}]
            )
            elapsed = time.monotonic() - started
            assert reply.http_response.status_code == 200
            assert reply.retries_taken >= 1
            assert elapsed >= 0.9  # it waited as Retry-After said, not its own backoff
            assert len(backend.requests) == 1
            rejected = metric(
                router, "llmservice_router_rejected_total", reason="rate_limit_requests", key="team"
            )
            assert rejected == reply.retries_taken

    run(scenario())


@pytest.mark.parametrize("engine_priority", [False, True])
@pytest.mark.parametrize("model", ["llama", "gpt-3.5-turbo"])  # the alias is rewritten
def test_the_priority_field_is_left_alone_without_engine_priority(
    engine_priority: bool, model: str
) -> None:
    async def scenario() -> None:
        async with FakeBackend(Mode.JSON) as backend:
            cfg = admitting(backend.url, engine_priority=engine_priority)
            async with RouterServer(cfg) as router, aiohttp.ClientSession() as client:
                for body in ({**CHAT, "model": model, "priority": 5}, {**CHAT, "model": model}):
                    assert (await post(client, router, None, body))[0] == 200
                sent = [request.json() for request in backend.requests]
                assert [s.get("priority") for s in sent] == (
                    [-1, -1] if engine_priority else [5, None]
                )
                assert all(s["model"] == "llama" and s["messages"] == CHAT["messages"]
                           for s in sent)  # fmt: skip

    run(scenario())
