"""The router in front of simulated vLLM replicas, driven by the openai SDK."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import aiohttp
import openai
import pytest

from llmservice.router.config import AdmissionConfig
from llmservice.sim import SimConfig, SimServer, TimingProfile

from .conftest import CHAT, RouterServer, config, run, until

# A decode step of 2 ms, so a long answer takes seconds and can be cut short.
FAST = TimingProfile("router-test", 0.002, 0.0, 0.0005, 0.00002)


def sim_config(name: str) -> SimConfig:
    return SimConfig(
        model="meta-llama/Llama-3.1-8B-Instruct",
        served_model_names=("llama",),
        max_model_len=4096,
        profile=FAST,
        replica_name=name,
    )


def test_openai_sdk_through_the_router_stream_and_not() -> None:
    async def scenario() -> None:
        async with (
            SimServer(sim_config("sim-0")) as sim0,
            SimServer(sim_config("sim-1")) as sim1,
            RouterServer(config(sim0.url, sim1.url)) as router,
            openai.AsyncOpenAI(base_url=router.url + "/v1", api_key="sk-test") as client,
        ):
            models = await client.models.list()
            assert [m.id for m in models.data] == ["llama", "gpt-3.5-turbo"]

            reply = await client.chat.completions.create(
                model="gpt-3.5-turbo",
                messages=[{"role": "user", "content": "Say hello"}],
                max_tokens=8,
                extra_headers={"X-Session-ID": "conversation-1"},
            )
            assert reply.choices[0].message.content
            assert reply.usage is not None
            assert reply.usage.completion_tokens == 8

            stream = await client.chat.completions.create(
                model="llama",
                messages=[{"role": "user", "content": "Count"}],
                max_tokens=12,
                stream=True,
                stream_options={"include_usage": True},
            )
            pieces = [chunk async for chunk in stream]
            text = "".join(c.choices[0].delta.content or "" for c in pieces if c.choices)
            assert text
            assert pieces[-1].usage is not None
            assert pieces[-1].usage.completion_tokens == 12

            completion = await client.completions.create(
                model="llama", prompt="Once upon a time", max_tokens=4
            )
            assert completion.choices[0].text

            with pytest.raises(openai.NotFoundError) as caught:
                await client.chat.completions.create(
                    model="gpt-4", messages=[{"role": "user", "content": "x"}]
                )
            assert caught.value.code == "model_not_found"
            lines = router.log_lines()
            assert {line["replica"] for line in lines if line["replica"]} <= {sim0.url, sim1.url}
            assert any(line["completion_tokens"] == 12 for line in lines)

    run(scenario())


def test_disconnect_aborts_the_simulated_request() -> None:
    async def scenario() -> None:
        async with (
            SimServer(sim_config("sim-0")) as sim,
            RouterServer(config(sim.url)) as router,
            aiohttp.ClientSession() as client,
        ):
            body = {**CHAT, "stream": True, "max_tokens": 3000, "ignore_eos": True}
            async with client.post(router.url + "/v1/chat/completions", json=body) as response:
                async for line in response.content:
                    if line.startswith(b"data:"):
                        break  # the first token arrived: hang up
            engine = sim.app.engine
            await until(lambda: not engine.running and not engine.waiting, within=10)
            assert engine.metrics.aborted == 1

    run(scenario())


def test_the_throughput_gate_holds_requests_while_the_engine_is_slow_per_request() -> None:
    # Each decode step costs 2 ms plus 2 ms per running sequence: one request gets 250
    # tokens/s, two get 167 each, three 125 each. With a floor of 150, the gate closes once
    # three run, and requests wait in the router instead of slowing everyone in the engine.
    crowded = TimingProfile("crowded", 0.002, 0.002, 0.0, 0.0)
    sim = replace(sim_config("sim-0"), profile=crowded)
    cfg = replace(
        config(),
        admission=AdmissionConfig(min_tokens_per_second_per_request=150, gate_interval=0.05),
    )

    async def scenario() -> None:
        async with SimServer(sim) as engine:
            routed = replace(cfg, discovery=replace(cfg.discovery, static_backends=(engine.url,)))
            async with RouterServer(routed) as router, aiohttp.ClientSession() as client:
                dispatcher = router.app.proxy.dispatcher
                registry = router.app.metrics.registry
                peak_running, closed_seen, gauge_seen = 0, False, set()

                def gauge() -> float | None:
                    labels = {"replica": engine.url}
                    return registry.get_sample_value("llmservice_router_replica_closed", labels)

                async def watch() -> None:
                    nonlocal peak_running, closed_seen
                    while True:
                        peak_running = max(peak_running, engine.app.engine.gauges().running)
                        closed_seen = closed_seen or bool(dispatcher.closed)
                        gauge_seen.add(gauge())
                        await asyncio.sleep(0.005)

                async def one() -> int:
                    body = {**CHAT, "max_tokens": 60}
                    async with client.post(router.url + "/v1/chat/completions", json=body) as r:
                        await r.read()
                        return r.status

                watcher = asyncio.create_task(watch())
                requests = []
                for _ in range(12):
                    requests.append(asyncio.create_task(one()))
                    await asyncio.sleep(0.05)
                statuses = await asyncio.gather(*requests)
                watcher.cancel()
                assert statuses == [200] * 12
                assert closed_seen
                # Without the gate all twelve overlap (60 tokens take at least 0.24 s each
                # and they arrive 50 ms apart); the gate keeps the batch at two or three,
                # and a few more may slip in before its first measure or between samples
                # when the machine is busy.
                assert 3 <= peak_running <= 7
                await until(lambda: not dispatcher.closed)
                assert router.app.proxy.loads == {engine.url: 0}
                # The gauge follows the gate, and an open replica reads 0, not absent.
                assert gauge_seen >= {0.0, 1.0}
                assert gauge() == 0.0

    run(scenario())
