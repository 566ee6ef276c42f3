"""The autoscaler over real sockets: router and engine /metrics served on loopback."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from aiohttp import web

from llmservice.api.spec import AutoscalingSpec
from llmservice.controller.autoscaler import Autoscaler


class MetricsPage:
    """A /metrics page on a loopback port whose text the test changes."""

    def __init__(self, text: str) -> None:
        self.text = text

    async def handle(self, _: web.Request) -> web.Response:
        return web.Response(text=self.text)


@asynccontextmanager
async def served(page: MetricsPage) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/metrics", page.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    await web.SockSite(runner, sock).start()
    try:
        yield f"http://127.0.0.1:{port}/metrics"
    finally:
        await runner.cleanup()


def router_text(requests: int, in_flight: int = 0, queued: int = 0) -> str:
    return (
        "# TYPE llmservice_router_requests_total counter\n"
        f'llmservice_router_requests_total{{route="/v1/chat/completions",code="503"}} {requests}\n'
        "# TYPE llmservice_router_in_flight gauge\n"
        f'llmservice_router_in_flight{{replica="10.0.0.1:8000"}} {in_flight}\n'
        "# TYPE llmservice_router_queued gauge\n"
        f'llmservice_router_queued{{key="anonymous"}} {queued}\n'
    )


TO_ZERO = AutoscalingSpec(
    enabled=True, min_replicas=0, max_replicas=3, target_per_replica=2,
    scale_down_stabilization_seconds=0, scale_to_zero_after_idle_seconds=30,
)  # fmt: skip


def test_idle_goes_to_zero_and_a_counted_request_or_a_queued_one_wakes_it() -> None:
    async def scenario() -> None:
        page = MetricsPage(router_text(5))
        async with served(page) as url, httpx.AsyncClient() as http:
            scaler = Autoscaler(http, scrape_interval=0)
            routers = [("router-0", url)]

            async def at(now: float, current: int) -> tuple[int, str] | None:
                found = await scaler.evaluate("ns", "chat", TO_ZERO, current, routers, [], now)
                return None if found is None else (found.decision.replicas, found.decision.reason)

            assert await at(0, 1) == (1, "")
            assert await at(29, 1) == (1, "")
            assert await at(30, 1) == (0, "ScaleToZero")
            assert await at(100, 0) == (0, "")
            page.text = router_text(6)  # one request answered (a 503 at zero)
            assert await at(101, 0) == (1, "WakeUp")
            assert await at(102, 1) == (1, "")
            assert await at(140, 1) == (0, "ScaleToZero")
            page.text = router_text(6, queued=5)  # five held in the router's queue
            assert await at(141, 0) == (3, "WakeUp")

    asyncio.run(scenario())


def test_no_answering_router_means_no_decision() -> None:
    async def scenario() -> None:
        async with httpx.AsyncClient() as http:
            scaler = Autoscaler(http, scrape_interval=0)
            # Nothing listens on port 9 of loopback: refused at once.
            routers = [("router-0", "http://127.0.0.1:9/metrics")]
            for now in (0.0, 1000.0):
                assert await scaler.evaluate("ns", "c", TO_ZERO, 1, routers, [], now) is None

    asyncio.run(scenario())


def test_kv_cache_usage_is_the_engines_mean() -> None:
    spec = AutoscalingSpec(
        enabled=True, max_replicas=8, metric="KVCacheUsage", target_per_replica=0.5
    )

    async def scenario() -> None:
        pages = [
            MetricsPage("vllm:kv_cache_usage_perc 0.8\n"),
            MetricsPage("vllm:kv_cache_usage_perc 1.0\n"),
        ]
        router = MetricsPage(router_text(0, in_flight=3))
        async with (
            served(router) as router_url,
            served(pages[0]) as first,
            served(pages[1]) as second,
            httpx.AsyncClient() as http,
        ):
            scaler = Autoscaler(http, scrape_interval=0)
            engines = [("engine-0", first), ("engine-1", second)]
            found = await scaler.evaluate(
                "ns", "chat", spec, 2, [("router-0", router_url)], engines, 0.0
            )
            assert found is not None
            # Mean usage 0.9 against 0.5: ceil(2 x 1.8) replicas.
            assert (found.decision.replicas, found.decision.reason) == (4, "ScaleUp")
            assert found.load.value == 0.9
            assert "KVCacheUsage mean 0.9, target 0.5 per replica" in found.describe(2)

    asyncio.run(scenario())
