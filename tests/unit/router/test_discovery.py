"""Discovery: the pure Pod state machine, and list-then-watch against a fake API server."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp import web

from llmservice.router import KubernetesDiscovery, PodTracker, Replica, StaticDiscovery
from llmservice.router.discovery import ApiServer

from .conftest import run, until


def pod(
    name: str,
    ip: str | None = "10.0.0.1",
    *,
    ready: bool = True,
    phase: str = "Running",
    deleting: bool = False,
    version: str = "1",
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "resourceVersion": version}
    if deleting:
        metadata["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
    }
    if ip:
        status["podIP"] = ip
    return {"metadata": metadata, "status": status}


def test_only_ready_running_pods_with_an_ip_are_routable() -> None:
    tracker = PodTracker(engine_port=8000)
    assert tracker.apply("ADDED", pod("a", "10.0.0.1"))
    assert not tracker.apply("ADDED", pod("b", "10.0.0.2", ready=False))
    assert not tracker.apply("ADDED", pod("c", None))
    assert not tracker.apply("ADDED", pod("d", "10.0.0.4", phase="Pending"))
    assert tracker.routable == {"a": Replica("a", "http://10.0.0.1:8000")}
    assert tracker.apply("MODIFIED", pod("b", "10.0.0.2"))
    assert set(tracker.routable) == {"a", "b"}


def test_a_pod_being_deleted_drains_then_disappears() -> None:
    tracker = PodTracker(engine_port=8000)
    tracker.apply("ADDED", pod("a"))
    assert tracker.apply("MODIFIED", pod("a", deleting=True))
    assert tracker.routable == {}
    assert tracker.draining == {"a"}
    assert not tracker.apply("DELETED", pod("a", deleting=True))
    assert tracker.draining == frozenset()


def test_a_pod_losing_readiness_stops_receiving_and_can_come_back() -> None:
    tracker = PodTracker(engine_port=8000)
    tracker.apply("ADDED", pod("a"))
    assert tracker.apply("MODIFIED", pod("a", ready=False))
    assert tracker.routable == {}
    assert tracker.apply("MODIFIED", pod("a", "10.0.0.9"))
    assert tracker.routable["a"].url == "http://10.0.0.9:8000"


def test_ipv6_pod_address_is_bracketed() -> None:
    tracker = PodTracker(engine_port=8000)
    tracker.apply("ADDED", pod("a", "fd00::5"))
    assert tracker.routable["a"].url == "http://[fd00::5]:8000"


def test_reset_replaces_everything() -> None:
    tracker = PodTracker(engine_port=8000)
    tracker.apply("ADDED", pod("a"))
    tracker.apply("ADDED", pod("b", deleting=True))
    assert tracker.reset([pod("c", "10.0.0.3")])
    assert set(tracker.routable) == {"c"}
    assert tracker.draining == frozenset()
    assert not tracker.reset([pod("c", "10.0.0.3")])


def test_bookmarks_and_unknown_events_change_nothing() -> None:
    tracker = PodTracker(engine_port=8000)
    assert not tracker.apply("BOOKMARK", {"metadata": {"resourceVersion": "5"}})
    assert not tracker.apply("ADDED", {"metadata": {}})
    assert tracker.routable == {}


def test_static_discovery_validates_urls() -> None:
    with pytest.raises(ValueError, match="not an http:"):
        StaticDiscovery(("127.0.0.1:8000",))
    seen: list[dict[str, Replica]] = []
    run(StaticDiscovery(("http://127.0.0.1:8000/",)).start(seen.append))
    assert seen == [
        {"http://127.0.0.1:8000": Replica("http://127.0.0.1:8000", "http://127.0.0.1:8000")}
    ]


class FakeApiServer:
    """Serves one namespace's Pods: a list, then watch events fed by the test."""

    def __init__(self, pods: list[dict[str, Any]]) -> None:
        self.pods = pods
        self.events: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.requests: list[web.Request] = []
        self.lists = 0
        self.gone_once = False
        app = web.Application()
        app.router.add_get("/api/v1/namespaces/{ns}/pods", self.handle)
        self.runner = web.AppRunner(app)
        self.port = 0

    async def start(self) -> str:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]
        return f"http://127.0.0.1:{self.port}"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request)
        assert request.match_info["ns"] == "llm"
        assert request.query["labelSelector"] == "app=engine"
        if request.query.get("watch") != "1":
            self.lists += 1
            return web.json_response(
                {"items": self.pods, "metadata": {"resourceVersion": str(self.lists)}}
            )
        if self.gone_once:
            self.gone_once = False
            return web.json_response({"code": 410}, status=410)
        response = web.StreamResponse()
        await response.prepare(request)
        while True:
            event = await self.events.get()
            if event is None:
                break
            await response.write(json.dumps(event).encode() + b"\n")
        return response

    async def stop(self) -> None:
        await self.events.put(None)
        await self.runner.cleanup()


def test_kubernetes_discovery_lists_then_follows_the_watch() -> None:
    async def scenario() -> None:
        api = FakeApiServer([pod("a", "10.0.0.1"), pod("b", "10.0.0.2", ready=False)])
        host = await api.start()
        seen: list[set[str]] = []
        discovery = KubernetesDiscovery(
            ApiServer(host, False, lambda: "Bearer token-1", "llm"), "app=engine", 8000
        )
        try:
            assert not discovery.synced
            await discovery.start(lambda routable: seen.append(set(routable)))
            await until(lambda: discovery.synced and seen == [{"a"}])
            await api.events.put({"type": "MODIFIED", "object": pod("b", "10.0.0.2")})
            await until(lambda: seen[-1] == {"a", "b"})
            await api.events.put(
                {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "9"}}}
            )
            await api.events.put({"type": "MODIFIED", "object": pod("a", deleting=True)})
            await until(lambda: seen[-1] == {"b"})
            await api.events.put({"type": "DELETED", "object": pod("a", deleting=True)})
            assert api.requests[0].headers["Authorization"] == "Bearer token-1"
            # The watch ends (as the server's timeout makes it): the router resumes it.
            await api.events.put(None)
            await until(lambda: sum(r.query.get("watch") == "1" for r in api.requests) >= 2)
            resumed = [r for r in api.requests if r.query.get("watch") == "1"][-1]
            assert resumed.query["resourceVersion"] == "1"
            assert discovery.tracker.routable.keys() == {"b"}
        finally:
            await discovery.stop()
            await api.stop()

    run(scenario())


def test_kubernetes_discovery_relists_after_gone() -> None:
    async def scenario() -> None:
        api = FakeApiServer([pod("a", "10.0.0.1")])
        api.gone_once = True
        host = await api.start()
        seen: list[set[str]] = []
        discovery = KubernetesDiscovery(
            ApiServer(host, False, lambda: None, "llm"), "app=engine", 8000
        )
        try:
            await discovery.start(lambda routable: seen.append(set(routable)))
            api.pods = [pod("a", "10.0.0.1"), pod("c", "10.0.0.3")]
            await until(lambda: api.lists >= 2, within=30)
            await until(lambda: seen[-1] == {"a", "c"})
            assert "Authorization" not in api.requests[0].headers
        finally:
            await discovery.stop()
            await api.stop()

    run(scenario())
