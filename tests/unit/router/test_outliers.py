"""The outlier detector's bookkeeping, driven directly (the socket tests are in test_resilience)."""

from __future__ import annotations

import asyncio

from llmservice.router.config import OutlierConfig
from llmservice.router.outliers import OutlierDetector

from .conftest import run, until


class Fleet:
    """A detector over ``count`` replicas whose probe answers ``probe_ok``."""

    def __init__(self, count: int, **changes: float) -> None:
        self.ejected: set[str] = set()
        self.probe_ok = False
        self.probes: list[str] = []
        config = OutlierConfig(**{"consecutive_failures": 2, "base_ejection": 0.05, **changes})
        self.detector = OutlierDetector(config, self.on_eject, self.probe)
        self.names = [f"r{i}" for i in range(count)]
        self.detector.update(self.names)

    def on_eject(self, name: str, ejected: bool) -> None:
        (self.ejected.add if ejected else self.ejected.discard)(name)

    async def probe(self, name: str) -> bool:
        self.probes.append(name)
        await asyncio.sleep(0)
        return self.probe_ok

    def fail(self, name: str, times: int) -> None:
        for _ in range(times):
            self.detector.failure(name, "5xx")


def test_at_most_the_configured_share_is_ejected() -> None:
    async def scenario() -> None:
        fleet = Fleet(10, max_ejected_percent=30, base_ejection=60)
        for name in fleet.names:
            fleet.fail(name, 2)
        assert len(fleet.ejected) == 3
        snapshot = fleet.detector.snapshot()
        assert sum(state["state"] == "open" for state in snapshot.values()) == 3
        # A replica that leaves while ejected (replaced by a new one) makes room for the
        # next replica that fails.
        gone = sorted(fleet.ejected)[0]
        fleet.detector.update([name for name in fleet.names if name != gone] + ["new"])
        waiting = next(name for name in fleet.names if name not in fleet.ejected)
        fleet.detector.failure(waiting, "connect")
        assert waiting in fleet.ejected
        assert len(fleet.ejected - {gone}) == 3
        await fleet.detector.close()

    run(scenario())


def test_ejection_off_never_ejects() -> None:
    async def scenario() -> None:
        fleet = Fleet(4, consecutive_failures=0)
        fleet.fail("r0", 100)
        assert not fleet.ejected
        assert fleet.detector.snapshot()["r0"]["consecutive_failures"] == 100
        await fleet.detector.close()

    run(scenario())


def test_readmission_needs_a_successful_probe() -> None:
    async def scenario() -> None:
        fleet = Fleet(2)
        fleet.fail("r0", 2)
        assert fleet.ejected == {"r0"}
        assert not fleet.detector.healthy("r0")
        # Failed probes keep it out, each for longer (a probe counts once its answer did).
        await until(lambda: fleet.detector.snapshot()["r0"]["ejections"] == 3)
        assert fleet.ejected == {"r0"}
        assert len(fleet.probes) == 2
        fleet.probe_ok = True
        await until(lambda: not fleet.ejected)
        assert fleet.detector.snapshot()["r0"] == {
            "state": "closed",
            "consecutive_failures": 0,
            "ejections": 3,
        }
        assert fleet.detector.healthy("r0")
        await fleet.detector.close()

    run(scenario())


def test_health_follows_the_recent_success_rate() -> None:
    async def scenario() -> None:
        fleet = Fleet(4, consecutive_failures=0)
        detector = fleet.detector
        assert detector.healthy("r0")  # a new replica
        detector.failure("r0", "reset")
        detector.failure("r0", "reset")
        assert detector.healthy("r0")  # two failures in a row: still mostly succeeding
        detector.failure("r0", "reset")
        assert not detector.healthy("r0")
        detector.success("r0")
        detector.success("r0")
        assert detector.healthy("r0")
        assert not detector.healthy("unknown")
        await detector.close()

    run(scenario())
