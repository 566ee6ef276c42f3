"""Readiness probes, run as the kubelet runs them, against the Pod's process.

A container without an HTTP readinessProbe is ready once it runs. One with a probe is ready
after `successThreshold` passes in a row and unready after `failureThreshold` failures in a
row, probed every `periodSeconds`. One deviation: until a container is first ready it is
probed every second at most, so a Pod turns Ready as soon as it serves rather than up to a
period later (the engine's period is 5 s; the sandbox's processes start in about one).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

UNREADY_PERIOD_SECONDS = 1.0
MAX_TIMEOUT_SECONDS = 1.0


@dataclass(frozen=True)
class HttpProbe:
    """A container's httpGet readinessProbe, with the port resolved to a number."""

    path: str
    port: int
    period: float
    timeout: float
    success_threshold: int
    failure_threshold: int

    @classmethod
    def readiness(cls, container: Any, serving_port: int) -> HttpProbe | None:
        """The probe of a typed V1Container, or None when it has no httpGet readinessProbe.

        A named port is looked up among the container's ports; the runtime binds the
        process to `serving_port`, which is what an unknown name falls back to.
        """
        probe = container.readiness_probe
        if probe is None or probe.http_get is None:
            return None
        port = probe.http_get.port
        if isinstance(port, str) and not port.isdigit():
            named = {p.name: p.container_port for p in container.ports or [] if p.name}
            port = named.get(port, serving_port)
        return cls(
            path=probe.http_get.path or "/",
            port=int(port),
            period=float(probe.period_seconds or 10),
            timeout=min(float(probe.timeout_seconds or 1), MAX_TIMEOUT_SECONDS),
            success_threshold=int(probe.success_threshold or 1),
            failure_threshold=int(probe.failure_threshold or 3),
        )


@dataclass
class ProbeState:
    """Consecutive results and the readiness they add up to, for one container."""

    probe: HttpProbe
    ready: bool = False
    successes: int = 0
    failures: int = 0
    next_at: float = 0.0

    def record(self, ok: bool) -> None:
        if ok:
            self.successes, self.failures = self.successes + 1, 0
            if self.successes >= self.probe.success_threshold:
                self.ready = True
        else:
            self.successes, self.failures = 0, self.failures + 1
            # A container never yet ready stays unready; a ready one needs the threshold.
            if self.failures >= self.probe.failure_threshold:
                self.ready = False


def http_ok(client: httpx.Client, url: str, timeout: float) -> bool:
    """The kubelet's rule: any status from 200 to 399 passes; no answer fails."""
    try:
        response = client.get(url, timeout=timeout)
    except httpx.HTTPError:
        return False
    return 200 <= response.status_code < 400


@dataclass
class Prober:
    """Readiness of each running Pod process, probed when due."""

    clock: Callable[[], float]
    check: Callable[[str, float], bool]
    states: dict[str, ProbeState] = field(default_factory=dict)

    def ready(self, uid: str, probe: HttpProbe | None, ip: str) -> bool:
        if probe is None:
            return True
        state = self.states.get(uid)
        if state is None or state.probe != probe:
            state = self.states[uid] = ProbeState(probe)
        now = self.clock()
        if now >= state.next_at:
            state.record(self.check(f"http://{ip}:{probe.port}{probe.path}", probe.timeout))
            period = probe.period if state.ready else min(probe.period, UNREADY_PERIOD_SECONDS)
            state.next_at = now + period
        return state.ready

    def forget(self, uid: str) -> None:
        """A new process starts unready, as a restarted container does."""
        self.states.pop(uid, None)
