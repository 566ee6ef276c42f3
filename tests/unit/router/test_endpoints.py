"""Local endpoints, /api/chat, metrics, and stickiness through the whole router."""

from __future__ import annotations

import aiohttp

from llmservice.router import BalancerConfig, Strategy

from .backends import FakeBackend, Mode
from .conftest import CHAT, MutableDiscovery, RouterServer, config, run


def test_models_lists_served_name_and_aliases() -> None:
    async def scenario() -> None:
        async with RouterServer(config()) as router, aiohttp.ClientSession() as client:
            async with client.get(router.url + "/v1/models") as response:
                body = await response.json()
            assert body["object"] == "list"
            assert [m["id"] for m in body["data"]] == ["llama", "gpt-3.5-turbo"]
            assert {m["root"] for m in body["data"]} == {"llama"}

    run(scenario())


def test_health_and_readiness() -> None:
    async def scenario() -> None:
        discovery = MutableDiscovery([], synced=False)
        async with (
            RouterServer(config(), discovery=discovery) as router,
            aiohttp.ClientSession() as client,
        ):
            async with client.get(router.url + "/healthz") as response:
                assert response.status == 200
            async with client.get(router.url + "/readyz") as response:
                assert response.status == 503
                assert "synced" in (await response.json())["reason"]
            discovery.set(["http://127.0.0.1:9"])
            async with client.get(router.url + "/readyz") as response:
                assert response.status == 200
            router.app.begin_drain()
            async with client.get(router.url + "/readyz") as response:
                assert response.status == 503
                assert (await response.json())["reason"] == "draining"
            async with client.get(router.url + "/healthz") as response:
                assert response.status == 200

    run(scenario())


def test_api_chat_makes_a_session_and_passes_sampling_parameters() -> None:
    async def scenario() -> None:
        async with (
            FakeBackend(Mode.JSON, name="a") as a,
            FakeBackend(Mode.JSON, name="b") as b,
            FakeBackend(Mode.JSON, name="c") as c,
            RouterServer(config(a.url, b.url, c.url)) as router,
            aiohttp.ClientSession() as client,
        ):
            body = {
                "messages": [{"role": "user", "content": "hi"}],
                "temperature": 0.3,
                "top_p": 0.9,
                "top_k": 40,
                "max_tokens": 16,
                "stop": ["\n"],
                "presence_penalty": 0.1,
                "frequency_penalty": 0.2,
                "repetition_penalty": 1.1,
            }
            async with client.post(router.url + "/api/chat", json=body) as response:
                assert response.status == 200
                session = response.headers["X-Session-ID"]
                first = response.headers["x-backend"]
            assert len(session) >= 16
            sent = next(r for r in (*a.requests, *b.requests, *c.requests)).json()
            assert sent["model"] == "llama"
            assert {k: v for k, v in sent.items() if k not in ("model", "messages")} == {
                k: v for k, v in body.items() if k != "messages"
            }
            # Sending the session back sticks to the same replica.
            for _ in range(5):
                async with client.post(
                    router.url + "/api/chat", json=body, headers={"X-Session-ID": session}
                ) as response:
                    assert response.headers["X-Session-ID"] == session
                    assert response.headers["x-backend"] == first
            assert len(a.requests) + len(b.requests) + len(c.requests) == 6
            assert backend_paths(a, b, c) == {"/v1/chat/completions"}

    run(scenario())


def backend_paths(*backends: FakeBackend) -> set[str]:
    return {r.path for backend in backends for r in backend.requests}


def test_sessions_stick_across_replica_changes() -> None:
    async def scenario() -> None:
        async with (
            FakeBackend(Mode.JSON, name="a") as a,
            FakeBackend(Mode.JSON, name="b") as b,
            FakeBackend(Mode.JSON, name="c") as c,
            FakeBackend(Mode.JSON, name="d") as d,
        ):
            discovery = MutableDiscovery([a.url, b.url, c.url])
            async with (
                RouterServer(config(a.url), discovery=discovery) as router,
                aiohttp.ClientSession() as client,
            ):

                async def placement() -> dict[str, str]:
                    out = {}
                    for i in range(60):
                        async with client.post(
                            router.url + "/v1/chat/completions",
                            json=CHAT,
                            headers={"X-Session-ID": f"user-{i}"},
                        ) as response:
                            out[f"user-{i}"] = response.headers["x-backend"]
                    return out

                before = await placement()
                assert await placement() == before  # sticky
                assert len(set(before.values())) == 3  # spread
                discovery.set([a.url, b.url, c.url, d.url])
                grown = await placement()
                moved = [s for s in before if grown[s] != before[s]]
                assert all(grown[s] == "d" for s in moved)  # only to the new replica
                assert len(moved) <= 30  # about 15 expected; the exact bound is a property test
                discovery.set([a.url, c.url, d.url])
                shrunk = await placement()
                assert all(shrunk[s] == grown[s] for s in grown if grown[s] != "b")
                metrics = await (await client.get(router.url + "/metrics")).text()
                assert (
                    'llmservice_router_session_routing_total{key="session",outcome="primary"}'
                    in (metrics)
                )

    run(scenario())


def test_metrics_count_requests_tokens_and_replicas() -> None:
    async def scenario() -> None:
        async with (
            FakeBackend(Mode.JSON) as backend,
            RouterServer(config(backend.url)) as router,
            aiohttp.ClientSession() as client,
        ):
            for model in ("llama", "gpt-3.5-turbo"):
                async with client.post(
                    router.url + "/v1/chat/completions", json={**CHAT, "model": model}
                ) as response:
                    assert response.status == 200
            async with client.post(
                router.url + "/v1/chat/completions",
                data=b"{",
                headers={"Content-Type": "application/json"},
            ) as response:
                assert response.status == 400
            async with client.get(router.url + "/metrics") as response:
                assert response.headers["Content-Type"].startswith("text/plain")
                text = await response.text()
            expected = [
                'llmservice_router_requests_total{code="200",model="llama",'
                'route="/v1/chat/completions"} 1.0',
                'llmservice_router_requests_total{code="200",model="gpt-3.5-turbo",'
                'route="/v1/chat/completions"} 1.0',
                'llmservice_router_errors_total{cause="bad_request"} 1.0',
                'llmservice_router_tokens_total{kind="prompt"} 14.0',
                'llmservice_router_tokens_total{kind="completion"} 6.0',
                'llmservice_router_replicas{state="routable"} 1.0',
                f'llmservice_router_in_flight{{replica="{backend.url}"}} 0.0',
                "llmservice_router_time_to_first_byte_seconds_count",
                "llmservice_router_request_duration_seconds_count",
            ]
            for line in expected:
                assert line in text, line

    run(scenario())


def test_two_apps_in_one_process_have_separate_metrics() -> None:
    async def scenario() -> None:
        async with (
            RouterServer(config()) as one,
            RouterServer(config()) as two,
            aiohttp.ClientSession() as client,
        ):
            async with client.get(one.url + "/nothing"):
                pass
            text_one = await (await client.get(one.url + "/metrics")).text()
            text_two = await (await client.get(two.url + "/metrics")).text()
            assert 'llmservice_router_errors_total{cause="bad_request"} 1.0' in text_one
            assert "llmservice_router_errors_total{" not in text_two

    run(scenario())


def test_round_robin_and_least_load_spread_requests() -> None:
    async def scenario(strategy: Strategy) -> None:
        async with (
            FakeBackend(Mode.JSON, name="a") as a,
            FakeBackend(Mode.JSON, name="b") as b,
        ):
            cfg = config(a.url, b.url, balancer=BalancerConfig(strategy=strategy))
            async with RouterServer(cfg) as router, aiohttp.ClientSession() as client:
                for _ in range(6):
                    async with client.post(
                        router.url + "/v1/chat/completions",
                        json=CHAT,
                        headers={"X-Session-ID": "same-session"},
                    ) as response:
                        assert response.status == 200
                # The session is ignored by these strategies: both replicas served.
                assert len(a.requests) == len(b.requests) == 3

    for strategy in (Strategy.ROUND_ROBIN, Strategy.LEAST_LOAD):
        run(scenario(strategy))


def test_api_chat_streams() -> None:
    async def scenario() -> None:
        async with (
            FakeBackend(Mode.STREAM, chunks=3) as backend,
            RouterServer(config(backend.url)) as router,
            aiohttp.ClientSession() as client,
        ):
            body = {"messages": [{"role": "user", "content": "hi"}], "stream": True}
            async with client.post(router.url + "/api/chat", json=body) as response:
                assert response.headers["Content-Type"].startswith("text/event-stream")
                assert response.headers["X-Session-ID"]
                events = [line async for line in response.content if line.startswith(b"data:")]
            assert events[-1].strip() == b"data: [DONE]"
            assert backend.requests[0].json()["stream"] is True

    run(scenario())
