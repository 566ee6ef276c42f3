"""Retries across the fleet, the retry budget and outlier ejection, with faults on real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from typing import Any

import aiohttp
import pytest

from llmservice.router import BalancerConfig, RetryPolicy, Strategy, Timeouts
from llmservice.router.config import OutlierConfig

from .backends import FakeBackend, Mode, blackhole_url, refusing_url
from .conftest import CHAT, RouterServer, config, run, until, until_stalled

ROUND_ROBIN = BalancerConfig(strategy=Strategy.ROUND_ROBIN)
NO_EJECTION = OutlierConfig(consecutive_failures=0)


async def post_all(client: aiohttp.ClientSession, url: str, count: int) -> list[int]:
    statuses = []
    for i in range(count):
        headers = {"X-Session-ID": f"s{i}"}
        async with client.post(url + "/v1/chat/completions", json=CHAT, headers=headers) as r:
            await r.read()
            statuses.append(r.status)
    return statuses


async def health(client: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with client.get(url + "/healthz") as response:
        assert response.status == 200
        body: dict[str, Any] = await response.json()
        return body


def proxied(backend: FakeBackend) -> int:
    """Requests the backend got on the proxied route (health probes left out)."""
    return sum(1 for r in backend.requests if r.path == "/v1/chat/completions")


# -- retries ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "status"),
    [
        (Mode.RESET, 0),
        (Mode.CLOSE, 0),
        (Mode.STATUS, 502),
        (Mode.STATUS, 503),
        (Mode.STATUS, 504),
    ],
)
def test_fault_before_the_response_is_retried_on_another_replica(mode: Mode, status: int) -> None:
    async def scenario() -> None:
        async with (
            FakeBackend(mode, status=status, name="bad") as bad,
            FakeBackend(Mode.JSON, name="good") as good,
        ):
            cfg = config(bad.url, good.url, balancer=ROUND_ROBIN, outliers=NO_EJECTION)
            async with RouterServer(cfg) as router, aiohttp.ClientSession() as client:
                assert await post_all(client, router.url, 20) == [200] * 20
                lines = router.log_lines()
            # Every first attempt on the bad replica moved to the good one, once: no request
            # tried a replica twice.
            assert proxied(bad) >= 5
            assert proxied(good) == 20
            assert sum(line["attempts"] == 2 for line in lines) == proxied(bad)
            assert all(line["attempts"] <= 2 for line in lines)
            assert all(line["replica"] == good.url for line in lines)

    run(scenario())


def test_refused_connection_is_retried_and_counted() -> None:
    async def scenario() -> None:
        async with FakeBackend(Mode.JSON) as good:
            cfg = config(refusing_url(), good.url, balancer=ROUND_ROBIN, outliers=NO_EJECTION)
            async with RouterServer(cfg) as router, aiohttp.ClientSession() as client:
                assert await post_all(client, router.url, 10) == [200] * 10
                retried = sum(line["attempts"] == 2 for line in router.log_lines())
                metrics = await (await client.get(router.url + "/metrics")).text()
            assert retried >= 5
            assert f'llmservice_router_retries_total{{reason="upstream_connect"}} {retried}.0' in (
                metrics
            )

    run(scenario())


@pytest.mark.parametrize("status", [500, 400, 404, 429])
def test_500_and_4xx_are_not_retried(status: int) -> None:
    async def scenario() -> None:
        async with (
            FakeBackend(Mode.STATUS, status=status) as a,
            FakeBackend(Mode.STATUS, status=status) as b,
            RouterServer(config(a.url, b.url)) as router,
            aiohttp.ClientSession() as client,
        ):
            async with client.post(router.url + "/v1/chat/completions", json=CHAT) as response:
                assert response.status == status
                assert (await response.json())["error"]["message"] == "engine failed"
            assert len(a.requests) + len(b.requests) == 1

    run(scenario())


def test_503_everywhere_is_passed_on_when_the_retries_are_spent() -> None:
    async def scenario() -> None:
        async with (
            FakeBackend(Mode.STATUS, status=503) as a,
            FakeBackend(Mode.STATUS, status=503) as b,
            FakeBackend(Mode.STATUS, status=503) as c,
        ):
            cfg = config(a.url, b.url, c.url, retry=RetryPolicy(attempts_max=2))
            async with RouterServer(cfg) as router, aiohttp.ClientSession() as client:
                async with client.post(router.url + "/v1/chat/completions", json=CHAT) as r:
                    assert r.status == 503
                    assert (await r.json())["error"]["message"] == "engine failed"
                assert router.log_lines()[-1]["attempts"] == 3
                metrics = await (await client.get(router.url + "/metrics")).text()
            assert (len(a.requests), len(b.requests), len(c.requests)) == (1, 1, 1)
            assert 'llmservice_router_upstream_attempts_total{outcome="5xx"} 3.0' in metrics
            assert 'llmservice_router_retries_total{reason="upstream_503"} 2.0' in metrics

    run(scenario())


def test_a_replica_is_tried_again_only_after_every_other_failed() -> None:
    async def scenario() -> None:
        async with (
            FakeBackend(Mode.STATUS, status=503) as a,
            FakeBackend(Mode.STATUS, status=503) as b,
        ):
            cfg = config(a.url, b.url, retry=RetryPolicy(attempts_max=3), outliers=NO_EJECTION)
            async with RouterServer(cfg) as router, aiohttp.ClientSession() as client:
                async with client.post(router.url + "/v1/chat/completions", json=CHAT) as r:
                    assert r.status == 503
                assert router.log_lines()[-1]["attempts"] == 4
            # Alternating: never twice in a row on one replica.
            arrivals = sorted([(r.at, "a") for r in a.requests] + [(r.at, "b") for r in b.requests])
            names = [name for _, name in arrivals]
            assert names in (["a", "b", "a", "b"], ["b", "a", "b", "a"])

    run(scenario())


def test_a_lone_replica_is_never_tried_twice_after_a_reset() -> None:
    async def scenario() -> None:
        async with FakeBackend(Mode.RESET) as backend:
            cfg = config(backend.url, retry=RetryPolicy(attempts_max=3))
            async with (
                RouterServer(cfg) as router,
                aiohttp.ClientSession() as client,
                client.post(router.url + "/v1/chat/completions", json=CHAT) as r,
            ):
                assert r.status == 502
                assert (await r.json())["error"]["code"] == "upstream_connect_error"
            assert len(backend.requests) == 1

    run(scenario())


def test_a_stale_pooled_connection_to_a_lone_replica_is_retried_on_a_fresh_one() -> None:
    async def scenario() -> None:
        # The engine answers on a new connection and closes a reused one as a request
        # arrives: the pooled connection broke, not the engine.
        async with FakeBackend(Mode.CLOSE_REUSED) as backend:
            async with (
                RouterServer(config(backend.url)) as router,
                aiohttp.ClientSession() as client,
            ):
                assert await post_all(client, router.url, 2) == [200, 200]
                assert [line["attempts"] for line in router.log_lines()] == [1, 2]
                body = await health(client, router.url)
            # The first connection served one request and broke on the second; a new one
            # took the retry.
            assert (backend.connections, len(backend.requests)) == (2, 3)
            # A stale connection is not the engine's failure.
            assert body["replicas"][backend.url]["consecutive_failures"] == 0

    run(scenario())


def test_connect_timeout_is_retried_and_answers_504_when_last() -> None:
    async def scenario() -> None:
        timeouts = Timeouts(connect=0.2)
        with blackhole_url() as hole:
            async with FakeBackend(Mode.JSON) as good:
                cfg = config(
                    hole, good.url, timeouts=timeouts, balancer=ROUND_ROBIN, outliers=NO_EJECTION
                )
                async with RouterServer(cfg) as router, aiohttp.ClientSession() as client:
                    assert await post_all(client, router.url, 4) == [200] * 4
                    attempts = [line["attempts"] for line in router.log_lines()]
                    assert 2 in attempts
                    assert len(good.requests) == 4
            async with (
                RouterServer(config(hole, timeouts=timeouts)) as router,
                aiohttp.ClientSession() as client,
                client.post(router.url + "/v1/chat/completions", json=CHAT) as response,
            ):
                assert response.status == 504
                assert (await response.json())["error"]["code"] == "upstream_timeout"

    run(scenario())


def test_connect_refusal_stays_502() -> None:
    async def scenario() -> None:
        async with (
            RouterServer(config(refusing_url())) as router,
            aiohttp.ClientSession() as client,
            client.post(router.url + "/v1/chat/completions", json=CHAT) as response,
        ):
            assert response.status == 502

    run(scenario())


# -- the retry budget ---------------------------------------------------------------------


def test_one_dead_replica_does_not_drain_the_budget() -> None:
    async def scenario() -> None:
        # A budget of one charged retry per 10 s, and ejection off: the dead replica keeps
        # taking first attempts, and every retry onto a healthy replica still goes ahead.
        policy = RetryPolicy(budget_ratio=0.0, budget_min_per_second=0.1)
        async with (
            FakeBackend(Mode.JSON) as a,
            FakeBackend(Mode.JSON) as b,
            FakeBackend(Mode.JSON) as c,
        ):
            urls = (refusing_url(), a.url, b.url, c.url)
            cfg = config(*urls, retry=policy, balancer=ROUND_ROBIN, outliers=NO_EJECTION)
            async with RouterServer(cfg) as router, aiohttp.ClientSession() as client:
                assert await post_all(client, router.url, 40) == [200] * 40
                # Far more retries than the one a drained budget would have allowed.
                assert sum(line["attempts"] == 2 for line in router.log_lines()) >= 5

    run(scenario())


def test_a_fleet_wide_outage_is_held_to_the_budget() -> None:
    async def scenario() -> None:
        policy = RetryPolicy(attempts_max=5, budget_ratio=0.0, budget_min_per_second=0.1)
        cfg = config(refusing_url(), refusing_url(), refusing_url(), retry=policy)
        async with RouterServer(cfg) as router, aiohttp.ClientSession() as client:
            assert await post_all(client, router.url, 10) == [502] * 10
            attempts = [line["attempts"] for line in router.log_lines()]
            metrics = await (await client.get(router.url + "/metrics")).text()
        # Retries are free while the replicas' success rates say healthy (new ones do); once
        # every replica has failed a few times in a row, each retry is charged, and the
        # budget (one per 10 s) holds: the later requests make one attempt each.
        assert attempts[0] == 6
        assert attempts[-5:] == [1] * 5
        assert sum(attempts) < 6 + 3 * 3 + 10
        assert 'llmservice_router_retries_refused_total{reason="budget"}' in metrics

    run(scenario())


# -- outlier ejection ---------------------------------------------------------------------


def test_ejection_growing_time_and_readmission_after_a_probe(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "llmservice.router.outliers")

    async def scenario() -> None:
        outliers = OutlierConfig(consecutive_failures=3, base_ejection=0.3, max_ejection=5.0)
        async with (
            FakeBackend(Mode.STATUS, status=503, name="bad") as bad,
            FakeBackend(Mode.JSON) as b,
            FakeBackend(Mode.JSON) as c,
            FakeBackend(Mode.JSON) as d,
        ):
            cfg = config(bad.url, b.url, c.url, d.url, balancer=ROUND_ROBIN, outliers=outliers)
            async with RouterServer(cfg) as router, aiohttp.ClientSession() as client:
                # Round robin: first attempts keep landing on the bad one until it is ejected.
                for _ in range(40):
                    assert await post_all(client, router.url, 1) == [200]
                    if proxied(bad) == 3:
                        break
                state = (await health(client, router.url))["replicas"][bad.url]
                assert state["state"] in ("open", "probing")
                assert (state["consecutive_failures"], state["ejections"]) == (3, 1)
                assert proxied(bad) == 3
                assert await post_all(client, router.url, 12) == [200] * 12
                assert proxied(bad) == 3  # ejected: no traffic

                def probes() -> list[float]:
                    return [r.at for r in bad.requests if r.path == "/health"]

                # The probes after the first two ejections fail (503): each failure ejects
                # it again, for base x ejections: 0.3 s, then 0.6 s, then 0.9 s.
                await until(lambda: len(probes()) == 2)
                bad.mode = Mode.JSON
                await until(lambda: len(probes()) == 3)
                gaps = [later - earlier for earlier, later in itertools.pairwise(probes())]
                assert gaps[0] >= 0.55
                assert gaps[1] >= 0.85
                await until(lambda: router.app.proxy.outliers.breakers[bad.url].state == "closed")
                state = (await health(client, router.url))["replicas"][bad.url]
                assert state == {"state": "closed", "consecutive_failures": 0, "ejections": 3}
                assert await post_all(client, router.url, 8) == [200] * 8
                assert proxied(bad) >= 4  # readmitted: its share again
                metrics = await (await client.get(router.url + "/metrics")).text()
            assert (
                f'llmservice_router_ejections_total{{reason="5xx",replica="{bad.url}"}} 1.0'
                in metrics
            )
            assert (
                f'llmservice_router_ejections_total{{reason="probe",replica="{bad.url}"}} 2.0'
                in metrics
            )
            assert f'llmservice_router_ejected{{replica="{bad.url}"}} 0.0' in metrics

    run(scenario())
    messages = [r.getMessage() for r in caplog.records if r.name == "llmservice.router.outliers"]
    assert len(messages) == 4  # three ejections, one readmission
    assert "after 3 consecutive failures (5xx)" in messages[0]
    assert messages[-1].endswith("readmitted after a successful health probe")


def test_never_more_than_half_the_replicas_are_ejected() -> None:
    async def scenario() -> None:
        outliers = OutlierConfig(consecutive_failures=2, base_ejection=30.0)
        async with (
            FakeBackend(Mode.STATUS, status=503) as a,
            FakeBackend(Mode.STATUS, status=503) as b,
            FakeBackend(Mode.STATUS, status=503) as c,
            FakeBackend(Mode.JSON) as good,
        ):
            cfg = config(
                a.url,
                b.url,
                c.url,
                good.url,
                balancer=ROUND_ROBIN,
                outliers=outliers,
                retry=RetryPolicy(attempts_max=3),
            )
            async with RouterServer(cfg) as router, aiohttp.ClientSession() as client:
                assert await post_all(client, router.url, 40) == [200] * 40
                replicas = (await health(client, router.url))["replicas"]
                metrics = await (await client.get(router.url + "/metrics")).text()
            states = [replicas[url]["state"] for url in (a.url, b.url, c.url)]
            assert sorted(states) == ["closed", "open", "open"]
            assert replicas[good.url]["state"] == "closed"
            assert metrics.count("llmservice_router_ejected{") == 4
            assert sum(f'{url}"}} 1.0' in metrics for url in (a.url, b.url, c.url)) == 2

    run(scenario())


def test_the_last_routable_replica_is_never_ejected() -> None:
    async def scenario() -> None:
        outliers = OutlierConfig(consecutive_failures=2, max_ejected_percent=100)
        async with (
            FakeBackend(Mode.STATUS, status=500) as backend,
            RouterServer(config(backend.url, outliers=outliers)) as router,
            aiohttp.ClientSession() as client,
        ):
            assert await post_all(client, router.url, 5) == [500] * 5
            state = (await health(client, router.url))["replicas"][backend.url]
            assert state == {"state": "closed", "consecutive_failures": 5, "ejections": 0}
            assert len(backend.requests) == 5

    run(scenario())


def test_a_failure_streak_broken_by_a_success_does_not_eject() -> None:
    async def scenario() -> None:
        outliers = OutlierConfig(consecutive_failures=3)
        async with (
            FakeBackend(Mode.STATUS, status=500) as a,
            FakeBackend(Mode.JSON) as b,
        ):
            cfg = config(a.url, b.url, balancer=ROUND_ROBIN, outliers=outliers)
            async with RouterServer(cfg) as router, aiohttp.ClientSession() as client:
                assert sorted(await post_all(client, router.url, 4)) == [200, 200, 500, 500]
                a.mode = Mode.JSON
                assert await post_all(client, router.url, 2) == [200, 200]
                a.mode = Mode.STATUS
                assert sorted(await post_all(client, router.url, 4)) == [200, 200, 500, 500]
                state = (await health(client, router.url))["replicas"][a.url]
            assert state == {"state": "closed", "consecutive_failures": 2, "ejections": 0}

    run(scenario())


# -- back-pressure ------------------------------------------------------------------------

BIG = 64 << 20  # far more than every buffer on the way together


def test_a_slow_client_holds_the_engine_back_instead_of_filling_the_router() -> None:
    async def scenario() -> None:
        written = 0

        async def engine(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal written
            await reader.readuntil(b"\r\n\r\n")
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n"
                b"content-length: " + str(BIG).encode() + b"\r\n\r\n"
            )
            piece = b"x" * (64 << 10)
            with contextlib.suppress(ConnectionError):
                while written < BIG:
                    writer.write(piece)
                    await writer.drain()  # blocks while the router does not read
                    written += len(piece)
            writer.close()

        server = await asyncio.start_server(engine, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        async with server, RouterServer(config(url)) as router:
            reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
            body = json.dumps(CHAT).encode()
            writer.write(
                b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n"
                b"content-type: application/json\r\ncontent-length: "
                + str(len(body)).encode()
                + b"\r\n\r\n"
                + body
            )
            # The client reads nothing: the engine's writes stop once the buffers between
            # are full.
            await until_stalled(lambda: written)
            assert written < BIG // 2
            # What waits inside the router itself is bounded by the pool's read buffer.
            buffered = [c.buffered for c in router.app.proxy.pool._open]  # type: ignore[union-attr]
            assert buffered
            assert max(buffered) <= 512 << 10
            # Reading on, the client gets every byte.
            await reader.readuntil(b"\r\n\r\n")
            received = 0
            while received < BIG:
                chunk = await reader.read(1 << 20)
                assert chunk
                received += len(chunk)
            assert received == BIG
            writer.close()

    run(scenario())
