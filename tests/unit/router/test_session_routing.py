"""Conversations keep their replica through the router, with and without a session header."""

from __future__ import annotations

import contextlib
from collections import Counter

import httpx

from llmservice.router import LeastLoadBalancer, StickyBalancer
from llmservice.sim import SimServer

from .conftest import RouterServer, config, run
from .test_sticky import Clock
from .test_with_simulator import sim_config

SYSTEM = "You are a patient assistant. " * 20  # one long system prompt for everyone


async def conversation(http: httpx.AsyncClient, number: int, turns: int, header: bool) -> list[str]:
    """Each turn's replica (the simulator's x-inference-pod), the whole history resent."""
    messages = [{"role": "system", "content": SYSTEM}]
    headers = {"X-Session-ID": f"conversation-{number}"} if header else {}
    served = []
    for turn in range(turns):
        messages.append({"role": "user", "content": f"Question {turn} of conversation {number}"})
        response = await http.post(
            "/v1/chat/completions",
            json={"model": "llama", "messages": messages, "max_tokens": 4},
            headers=headers,
        )
        assert response.status_code == 200, response.text
        served.append(response.headers["x-inference-pod"])
        messages.append(response.json()["choices"][0]["message"])
    return served


def test_each_conversation_stays_on_one_replica_and_conversations_spread() -> None:
    async def scenario(header: bool) -> None:
        async with contextlib.AsyncExitStack() as stack:
            sims = [
                await stack.enter_async_context(SimServer(sim_config(f"sim-{n}"))) for n in range(4)
            ]
            router = await stack.enter_async_context(
                RouterServer(config(*(sim.url for sim in sims)))
            )
            http = await stack.enter_async_context(
                httpx.AsyncClient(base_url=router.url, timeout=30.0)
            )
            served: dict[int, list[str]] = {}
            for number in range(12):
                served[number] = await conversation(http, number, 3, header)
            for number, replicas in served.items():
                assert len(set(replicas)) == 1, (number, replicas)
            # Twelve fresh conversations on four replicas: at most ceil(1.1 * 12 / 4) each,
            # although they all share the system prompt (the old key: its first characters).
            placed = Counter(replicas[0] for replicas in served.values())
            assert len(placed) == 4
            assert max(placed.values()) <= 4
            keys = {line["key"] for line in router.log_lines()}
            assert keys == {"session" if header else "prefix"}

    run(scenario(header=True))
    run(scenario(header=False))


def test_router_replicas_that_hear_each_others_conversations_share_their_placement() -> None:
    # Two router replicas in front of the same engines, each turn sent to either (as a load
    # balancer spreading requests would): each hears later turns of conversations the other
    # placed, and so places as the other would. One router replica alone never does.
    async def scenario(routers: int) -> list[StickyBalancer]:
        clock = Clock()
        balancers = [StickyBalancer(fallback=LeastLoadBalancer(), clock=clock) for _ in range(2)]
        async with contextlib.AsyncExitStack() as stack:
            sims = [
                await stack.enter_async_context(SimServer(sim_config(f"sim-{n}"))) for n in range(4)
            ]
            urls = [sim.url for sim in sims]
            clients = []
            for balancer in balancers[:routers]:
                router = await stack.enter_async_context(
                    RouterServer(config(*urls), balancer=balancer)
                )
                clients.append(
                    await stack.enter_async_context(
                        httpx.AsyncClient(base_url=router.url, timeout=30.0)
                    )
                )
            for number in range(24):
                messages = [{"role": "system", "content": SYSTEM}]
                served = set()
                for turn in range(3):
                    messages.append({"role": "user", "content": f"Question {turn} of {number}"})
                    response = await clients[(number + turn) % routers].post(
                        "/v1/chat/completions",
                        json={"model": "llama", "messages": messages, "max_tokens": 4},
                        headers={"X-Session-ID": f"conversation-{number}"},
                    )
                    assert response.status_code == 200, response.text
                    served.add(response.headers["x-inference-pod"])
                    messages.append(response.json()["choices"][0]["message"])
                assert len(served) == 1, (number, served)
                clock.now += 0.5
            for http in clients:
                metrics = (await http.get("/metrics")).text
                shared = balancers[clients.index(http)].shared
                assert f"llmservice_router_placement_shared {float(shared)}" in metrics
        return balancers[:routers]

    assert all(balancer.shared for balancer in run(scenario(2)))
    assert not any(balancer.shared for balancer in run(scenario(1)))
