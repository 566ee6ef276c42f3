"""Proxying on real sockets: streaming, cancellation, retries, timeouts, headers."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest

from llmservice.router import RetryPolicy, Timeouts

from .backends import FakeBackend, Mode, refusing_url
from .conftest import CHAT, MutableDiscovery, RouterServer, config, run, until

STREAM = {**CHAT, "stream": True}


def test_json_passes_through_with_usage_and_request_id() -> None:
    async def scenario() -> None:
        async with (
            FakeBackend(Mode.JSON) as backend,
            RouterServer(config(backend.url)) as router,
            aiohttp.ClientSession() as client,
        ):
            async with client.post(
                router.url + "/v1/chat/completions", json=CHAT, headers={"X-Request-ID": "abc-1"}
            ) as response:
                assert response.status == 200
                assert response.headers["X-Request-ID"] == "abc-1"
                assert response.headers["x-backend"] == "fake"
                body = await response.json()
            assert body["usage"]["total_tokens"] == 10
            assert backend.requests[0].headers["x-request-id"] == "abc-1"
            assert backend.requests[0].path == "/v1/chat/completions"
            line = router.log_lines()[-1]
            assert line["request_id"] == "abc-1"
            assert (line["status"], line["prompt_tokens"], line["completion_tokens"]) == (200, 7, 3)
            assert "hello" not in router.log.getvalue()  # never the prompt

    run(scenario())


def test_sse_is_forwarded_chunk_by_chunk() -> None:
    async def scenario() -> None:
        async with (
            FakeBackend(Mode.STREAM, chunks=4, delay=0.3) as backend,
            RouterServer(config(backend.url)) as router,
            aiohttp.ClientSession() as client,
            client.post(router.url + "/v1/chat/completions", json=STREAM) as response,
        ):
            assert response.headers["Content-Type"].startswith("text/event-stream")
            arrivals: list[float] = []
            events: list[bytes] = []
            async for line in response.content:
                if line.startswith(b"data:"):
                    arrivals.append(time.monotonic())
                    events.append(line)
            assert events[-1].strip() == b"data: [DONE]"
            assert len(events) == 6  # 4 tokens, usage, [DONE]
            # Each token arrived on its own, spread over the backend's delays, not in one burst.
            assert arrivals[3] - arrivals[0] > 0.5
            record = router.log_lines()[-1]
            assert (record["prompt_tokens"], record["completion_tokens"]) == (4, 5)
            assert record["ttfb_ms"] is not None

    run(scenario())


@pytest.mark.parametrize("plain_server", [False, True], ids=["router-server", "plain-uvicorn"])
def test_client_disconnect_cancels_upstream_within_a_second(plain_server: bool) -> None:
    async def scenario() -> None:
        async with (
            FakeBackend(Mode.STREAM, chunks=1000, delay=0.05) as backend,
            RouterServer(config(backend.url), plain_server=plain_server) as router,
        ):
            reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
            body = json.dumps(STREAM).encode()
            writer.write(
                b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n"
                b"content-type: application/json\r\ncontent-length: "
                + str(len(body)).encode()
                + b"\r\n\r\n"
                + body
            )
            await writer.drain()
            await reader.readuntil(b"data:")  # streaming has begun
            writer.close()
            await writer.wait_closed()
            closed_at = time.monotonic()
            await until(lambda: bool(backend.disconnects))
            assert backend.disconnects[0] - closed_at < 1.0
            await until(lambda: router.app.proxy.loads[backend.url] == 0)
            await until(lambda: any(r["status"] == 499 for r in router.log_lines()))
            assert router.log_lines()[-1]["cause"] == "client_disconnect"

    run(scenario())


@pytest.mark.parametrize("plain_server", [False, True], ids=["router-server", "plain-uvicorn"])
def test_non_streaming_disconnect_also_cancels_upstream(plain_server: bool) -> None:
    async def scenario() -> None:
        async with (
            FakeBackend(Mode.STALL) as backend,
            RouterServer(config(backend.url), plain_server=plain_server) as router,
        ):
            _reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
            body = json.dumps(CHAT).encode()
            writer.write(
                b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: "
                + str(len(body)).encode()
                + b"\r\n\r\n"
                + body
            )
            await writer.drain()
            await until(lambda: bool(backend.requests))
            writer.close()
            await writer.wait_closed()
            closed_at = time.monotonic()
            await until(lambda: bool(backend.disconnects))
            assert backend.disconnects[0] - closed_at < 1.0

    run(scenario())


def test_refused_connection_is_retried_on_another_replica() -> None:
    async def scenario() -> None:
        dead = refusing_url()
        async with FakeBackend(Mode.JSON) as good:
            cfg = config(dead, good.url)
            async with RouterServer(cfg) as router, aiohttp.ClientSession() as client:
                for i in range(30):  # whatever the key, every request lands on the live one
                    headers = {"X-Session-ID": f"s{i}"}
                    async with client.post(
                        router.url + "/v1/chat/completions", json=CHAT, headers=headers
                    ) as response:
                        assert response.status == 200
                assert len(good.requests) == 30
                assert any(line["attempts"] == 2 for line in router.log_lines())
                metrics = await (await client.get(router.url + "/metrics")).text()
                assert 'llmservice_router_retries_total{reason="upstream_connect"}' in metrics

    run(scenario())


def test_all_replicas_refusing_gives_502_with_openai_error() -> None:
    async def scenario() -> None:
        cfg = config(refusing_url(), refusing_url())
        async with RouterServer(cfg) as router, aiohttp.ClientSession() as client:
            async with client.post(router.url + "/v1/chat/completions", json=CHAT) as response:
                assert response.status == 502
                body = await response.json()
            assert body["error"]["code"] == "upstream_connect_error"
            assert body["error"]["request_id"] == response.headers["X-Request-ID"]

    run(scenario())


def test_no_retry_after_the_first_byte() -> None:
    async def scenario() -> None:
        async with (
            FakeBackend(Mode.DIE_MID_STREAM, chunks=2, name="a") as a,
            FakeBackend(Mode.DIE_MID_STREAM, chunks=2, name="b") as b,
            RouterServer(config(a.url, b.url)) as router,
            aiohttp.ClientSession() as client,
            client.post(router.url + "/v1/chat/completions", json=STREAM) as response,
        ):
            assert response.status == 200
            events = [line async for line in response.content if line.startswith(b"data:")]
            assert len(a.requests) + len(b.requests) == 1
            assert b"t0" in events[0]
            error = json.loads(events[-1][5:])
            assert error["error"]["code"] == "upstream_protocol_error"
            await until(lambda: router.log_lines()[-1]["cause"] == "upstream_protocol")

    run(scenario())


def test_non_streaming_body_cut_off_closes_the_connection() -> None:
    async def scenario() -> None:
        async with (
            FakeBackend(Mode.DIE_MID_STREAM, chunks=2) as backend,
            RouterServer(config(backend.url)) as router,
            aiohttp.ClientSession() as client,
        ):
            # The engine answered with a stream the client did not ask for and died in it;
            # the router cannot change the status any more, so the body ends early.
            async with client.post(router.url + "/v1/chat/completions", json=CHAT) as response:
                assert response.status == 200
                events = [line async for line in response.content if line.startswith(b"data:")]
            assert b"error" in events[-1]

    run(scenario())


def test_first_byte_timeout_is_504_and_not_retried() -> None:
    async def scenario() -> None:
        async with (
            FakeBackend(Mode.STALL) as a,
            FakeBackend(Mode.STALL) as b,
        ):
            cfg = config(a.url, b.url, timeouts=Timeouts(first_byte=0.5))
            async with RouterServer(cfg) as router, aiohttp.ClientSession() as client:
                started = time.monotonic()
                async with client.post(router.url + "/v1/chat/completions", json=CHAT) as r:
                    assert r.status == 504
                    body = await r.json()
                assert time.monotonic() - started < 10
                assert body["error"]["code"] == "upstream_timeout"
                assert "first-byte" in body["error"]["message"]
                assert len(a.requests) + len(b.requests) == 1
                await until(lambda: bool(a.disconnects or b.disconnects))

    run(scenario())


def test_idle_timeout_mid_stream_ends_with_an_error_event() -> None:
    async def scenario() -> None:
        async with FakeBackend(Mode.STREAM, chunks=3, delay=3.0) as backend:
            cfg = config(backend.url, timeouts=Timeouts(idle=0.5))
            async with (
                RouterServer(cfg) as router,
                aiohttp.ClientSession() as client,
                client.post(router.url + "/v1/chat/completions", json=STREAM) as response,
            ):
                events = [line async for line in response.content if line.startswith(b"data:")]
                assert len(events) == 2
                assert "idle" in json.loads(events[-1][5:])["error"]["message"]
                await until(lambda: bool(backend.disconnects))

    run(scenario())


def test_a_stream_longer_than_the_idle_timeout_runs_to_its_end_while_parts_keep_coming() -> None:
    async def scenario() -> None:
        async with FakeBackend(Mode.STREAM, chunks=8, delay=0.15) as backend:
            cfg = config(backend.url, timeouts=Timeouts(idle=0.5))
            async with (
                RouterServer(cfg) as router,
                aiohttp.ClientSession() as client,
                client.post(router.url + "/v1/chat/completions", json=STREAM) as response,
            ):
                body = await response.read()
                assert response.status == 200
                assert b'"error"' not in body
                assert body.rstrip().endswith(b"data: [DONE]")

    run(scenario())


def test_total_timeout_bounds_a_slow_stream() -> None:
    async def scenario() -> None:
        async with FakeBackend(Mode.STREAM, chunks=100, delay=0.2) as backend:
            cfg = config(backend.url, timeouts=Timeouts(total=1.0))
            async with (
                RouterServer(cfg) as router,
                aiohttp.ClientSession() as client,
                client.post(router.url + "/v1/chat/completions", json=STREAM) as response,
            ):
                events = [line async for line in response.content if line.startswith(b"data:")]
                assert 1 < len(events) < 50
                assert "total" in json.loads(events[-1][5:])["error"]["message"]
                await until(lambda: bool(backend.disconnects))

    run(scenario())


def test_upstream_500_is_passed_through_and_not_retried() -> None:
    async def scenario() -> None:
        async with (
            FakeBackend(Mode.STATUS, status=500) as a,
            FakeBackend(Mode.STATUS, status=500) as b,
            RouterServer(config(a.url, b.url)) as router,
            aiohttp.ClientSession() as client,
        ):
            async with client.post(router.url + "/v1/chat/completions", json=CHAT) as response:
                assert response.status == 500
                assert (await response.json())["error"]["message"] == "engine failed"
            assert len(a.requests) + len(b.requests) == 1
            metrics = await (await client.get(router.url + "/metrics")).text()
            assert 'llmservice_router_errors_total{cause="upstream_5xx"} 1.0' in metrics

    run(scenario())


def test_connection_closed_before_headers_is_retried_within_the_limit() -> None:
    async def scenario() -> None:
        async with (
            FakeBackend(Mode.CLOSE) as a,
            FakeBackend(Mode.CLOSE) as b,
        ):
            cfg = config(a.url, b.url, retry=RetryPolicy(attempts_max=3))
            async with RouterServer(cfg) as router, aiohttp.ClientSession() as client:
                async with client.post(router.url + "/v1/chat/completions", json=CHAT) as r:
                    assert r.status == 502
                # 1 try + 3 retries, never twice in a row on one replica.
                assert (len(a.requests), len(b.requests)) == (2, 2)
                assert router.log_lines()[-1]["attempts"] == 4

    run(scenario())


def test_headers_hop_by_hop_and_authorization_are_not_forwarded() -> None:
    async def scenario() -> None:
        async with FakeBackend(Mode.JSON) as backend:
            for forward in (False, True):
                cfg = config(backend.url, forward_authorization=forward)
                async with RouterServer(cfg) as router, aiohttp.ClientSession() as client:
                    headers = {
                        "Authorization": "Bearer sk-secret",
                        "Connection": "keep-alive, x-custom-hop",
                        "Keep-Alive": "timeout=5",
                        "TE": "trailers",
                        "Proxy-Authorization": "Basic x",
                        "X-Custom": "kept",
                        "X-Custom-Hop": "dropped",
                    }
                    async with client.post(
                        router.url + "/v1/chat/completions", json=CHAT, headers=headers
                    ) as response:
                        assert response.status == 200
                        assert "keep-alive" not in {k.lower() for k in response.headers}
                    seen = backend.requests[-1].headers
                    assert seen["x-custom"] == "kept"
                    for hop in ("keep-alive", "te", "proxy-authorization", "x-custom-hop"):
                        assert hop not in seen
                    assert ("authorization" in seen) is forward
                    assert "sk-secret" not in router.log.getvalue()

    run(scenario())


def test_alias_is_rewritten_to_the_served_name() -> None:
    async def scenario() -> None:
        async with (
            FakeBackend(Mode.JSON) as backend,
            RouterServer(config(backend.url)) as router,
            aiohttp.ClientSession() as client,
        ):
            body = {**CHAT, "model": "gpt-3.5-turbo"}
            async with client.post(router.url + "/v1/chat/completions", json=body) as response:
                assert response.status == 200
            assert backend.requests[-1].json()["model"] == "llama"
            async with client.post(router.url + "/v1/chat/completions", json=CHAT) as response:
                assert response.status == 200
            assert backend.requests[-1].json()["model"] == "llama"

    run(scenario())


def test_draining_replica_finishes_its_stream() -> None:
    async def scenario() -> None:
        async with (
            FakeBackend(Mode.STREAM, chunks=10, delay=0.1, name="a") as a,
            FakeBackend(Mode.JSON, name="b") as b,
        ):
            discovery = MutableDiscovery([a.url])
            async with (
                RouterServer(config(a.url), discovery=discovery) as router,
                aiohttp.ClientSession() as client,
                client.post(router.url + "/v1/chat/completions", json=STREAM) as stream,
            ):
                await a.stream_started.wait()
                discovery.set([b.url])  # a is being deleted: no new requests, stream goes on
                async with client.post(router.url + "/v1/chat/completions", json=CHAT) as r:
                    assert r.headers["x-backend"] == "b"
                events = [line async for line in stream.content if line.startswith(b"data:")]
                assert events[-1].strip() == b"data: [DONE]"
                await until(lambda: a.url not in router.app.proxy.loads)

    run(scenario())


def test_completions_and_embeddings_pass_through_with_the_query_string() -> None:
    async def scenario() -> None:
        async with (
            FakeBackend(Mode.JSON) as backend,
            RouterServer(config(backend.url)) as router,
            aiohttp.ClientSession() as client,
        ):
            for path, body in (
                ("/v1/completions", {"model": "llama", "prompt": "Once"}),
                ("/v1/embeddings?api-version=1", {"model": "gpt-3.5-turbo", "input": ["a"]}),
            ):
                async with client.post(router.url + path, json=body) as response:
                    assert response.status == 200
                assert backend.requests[-1].path == path
                assert backend.requests[-1].json()["model"] == "llama"

    run(scenario())
