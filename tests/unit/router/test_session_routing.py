"""Conversations keep their replica through the router, with and without a session header."""

from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import replace

import httpx

from llmservice.router import LeastLoadBalancer, StickyBalancer
from llmservice.router.config import PeerConfig
from llmservice.sim import SimServer

from .conftest import RouterServer, config, run
from .test_peers import free_udp_port
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


async def turns_through(clients: list[httpx.AsyncClient], number: int) -> set[str]:
    """The replicas that served conversation ``number``, its turn N sent through
    ``clients[N]`` under its session header."""
    messages = [{"role": "system", "content": SYSTEM}]
    served = set()
    for turn, client in enumerate(clients):
        messages.append({"role": "user", "content": f"Question {turn} of {number}"})
        response = await client.post(
            "/v1/chat/completions",
            json={"model": "llama", "messages": messages, "max_tokens": 4},
            headers={"X-Session-ID": f"conversation-{number}"},
        )
        assert response.status_code == 200, response.text
        served.add(response.headers["x-inference-pod"])
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
                served = await turns_through(
                    [clients[(number + turn) % routers] for turn in range(3)], number
                )
                assert len(served) == 1, (number, served)
                clock.now += 0.5
            for http in clients:
                metrics = (await http.get("/metrics")).text
                shared = balancers[clients.index(http)].shared
                assert f"llmservice_router_placement_shared {float(shared)}" in metrics
        return balancers[:routers]

    assert all(balancer.shared for balancer in run(scenario(2)))
    assert not any(balancer.shared for balancer in run(scenario(1)))


def test_router_replicas_told_each_others_placements_keep_every_conversation_in_place() -> None:
    # Two router replicas whose views differ: the first alone hears the first conversations
    # (as a client keeping its connection to one router replica would send them), so its
    # session counts differ from the second's. Then every turn alternates between them.
    # Told each other's placements, the second sends each turn where the first placed the
    # conversation; placing on its own (the control), it places some elsewhere.
    async def scenario(peers: bool) -> tuple[int, list[float]]:
        ports = [free_udp_port(), free_udp_port()]
        async with contextlib.AsyncExitStack() as stack:
            sims = [
                await stack.enter_async_context(SimServer(sim_config(f"sim-{n}"))) for n in range(4)
            ]
            urls = [sim.url for sim in sims]
            clients = []
            for n in range(2):
                cfg = config(*urls)
                if peers:
                    told = PeerConfig(
                        port=ports[n], host="127.0.0.1", static=(f"127.0.0.1:{ports[1 - n]}",)
                    )
                    cfg = replace(cfg, peers=told, balancer=replace(cfg.balancer, stable_keys=True))
                router = await stack.enter_async_context(RouterServer(cfg))
                clients.append(
                    await stack.enter_async_context(
                        httpx.AsyncClient(base_url=router.url, timeout=30.0)
                    )
                )
            moved = 0
            for number in range(16):
                turns = [clients[0] if number < 3 else clients[(number + t) % 2] for t in range(3)]
                moved += len(await turns_through(turns, number)) > 1
            adopted = []
            for http in clients:
                metrics = (await http.get("/metrics")).text
                adopted += [
                    float(line.rsplit(" ", 1)[1])
                    for line in metrics.splitlines()
                    if line.startswith('llmservice_router_peer_placements_total{event="adopted"}')
                ]
        return moved, adopted

    moved, adopted = run(scenario(peers=True))
    assert moved == 0
    assert len(adopted) == 2
    assert min(adopted) > 0
    moved, adopted = run(scenario(peers=False))
    assert moved > 0
    assert adopted == []
