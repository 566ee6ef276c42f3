"""The operator tells, in RouterAvailable, when router Pods rejected a new API keys file.

The verdict comes from the routers' own metrics, scraped over real sockets from real router
apps whose keys files are changed on disk.
"""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest

from llmservice.controller import conditions as c
from llmservice.controller import observe
from llmservice.controller.router_keys import RouterKeysTracker, keys_file_valid
from llmservice.router.keys_reload import ApiKeysFile
from tests.unit.router.conftest import RouterServer, config, run
from tests.unit.router.secret_volume import SecretVolume

GOOD = "keys:\n  - {name: team-a, key: sk-team-a-0123456789abcdef}\n"
BAD = "keys:\n  - {name: team-a, key: sk-team-a-0123456789abcdef, priority: 0}\n"
READY = observe.DeploymentState(desired=2, ready=2, available=2, updated=2, current_generation=True)


@pytest.mark.parametrize(
    ("rejecting", "message"),
    [
        (0, "2/2 replicas ready"),
        (
            1,
            "2/2 replicas ready; 1 router replica rejected the new API keys file and keeps"
            " the last good keys: see its log",
        ),
        (
            2,
            "2/2 replicas ready; 2 router replicas rejected the new API keys file and keep"
            " the last good keys: see their logs",
        ),
    ],
)
def test_router_available_stays_true_and_says_so(rejecting: int, message: str) -> None:
    router = observe.router_observation(READY, [], {}, rejecting)
    assert (router.type, router.status, router.reason) == (c.ROUTER_AVAILABLE, c.TRUE, c.AVAILABLE)
    assert router.message == message
    engine = observe.engine_observation(READY, [])
    ready, _, stalled = observe.summary(engine, router, None)
    assert (ready.status, stalled.status) == (c.TRUE, c.FALSE)


def test_a_router_that_is_not_ready_is_described_by_its_readiness_only() -> None:
    waiting = observe.DeploymentState(2, 0, 0, 0, True)
    router = observe.router_observation(waiting, [], {}, 1)
    assert (router.status, router.message) == (c.FALSE, "0/2 replicas ready")


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        ("# TYPE llmservice_router_api_keys_file_valid gauge\n"
         "llmservice_router_api_keys_file_valid 1.0\n", True),
        ("llmservice_router_api_keys_file_valid 0.0\n", False),
        ("llmservice_router_replicas{state=\"routable\"} 1.0\n", None),
    ],
)  # fmt: skip
def test_the_verdict_is_read_from_the_gauge(text: str, verdict: bool | None) -> None:
    assert keys_file_valid(text) is verdict


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_routers_are_scraped_at_most_every_interval(tmp_path: Path) -> None:
    volumes = [SecretVolume(tmp_path / f"router-{i}", {"keys.yaml": GOOD}) for i in range(2)]
    files = [ApiKeysFile.load(v.path("keys.yaml")) for v in volumes]

    async def scenario() -> None:
        async with (
            RouterServer(config(), api_keys_file=files[0]) as first,
            RouterServer(config(), api_keys_file=files[1]) as second,
            httpx.AsyncClient() as http,
        ):
            tracker = RouterKeysTracker(http, scrape_interval=10.0)
            targets = [
                ("router-0", first.url + "/metrics"),
                ("router-1", second.url + "/metrics"),
                ("router-gone", f"http://127.0.0.1:{closed_port()}/metrics"),
            ]
            assert await tracker.rejecting("ns", "chat", targets, now=0.0) == 0

            volumes[1].update({"keys.yaml": BAD})
            assert files[1].check() is False
            # Not due yet: the last scrape stands.
            assert await tracker.rejecting("ns", "chat", targets, now=5.0) == 0
            assert await tracker.rejecting("ns", "chat", targets, now=10.0) == 1
            # A Pod no longer ready is not counted, whatever it said before.
            assert await tracker.rejecting("ns", "chat", targets[:1], now=11.0) == 0

            volumes[0].update({"keys.yaml": BAD})
            assert files[0].check() is False
            assert await tracker.rejecting("ns", "chat", targets, now=20.0) == 2

            volumes[1].update({"keys.yaml": GOOD})  # the content in use again
            assert files[1].check() is False
            assert await tracker.rejecting("ns", "chat", targets, now=30.0) == 1
            assert await tracker.rejecting("ns", "chat", [], now=40.0) == 0

    run(scenario())
