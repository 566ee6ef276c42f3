"""Passive outlier ejection: the router's circuit breaker per engine replica.

Every attempt's outcome is reported here by the proxy. A failure is an attempt that got no
usable answer from the replica: the connection was refused or timed out, it broke before
the response (on a fresh connection; a pooled one the engine had closed says nothing about
the replica), or the answer was a 5xx. Anything else is a success and resets the count.

Rules (the shape of Envoy's outlier detection):

- ``consecutive_failures`` failures in a row *eject* the replica (breaker ``open``): the
  dispatcher counts it as blocked, so the balancer picks another replica for new requests
  and retries; requests already on it finish.
- The ejection lasts ``base_ejection`` times the number of times the replica has been
  ejected, capped at ``max_ejection``: a replica that keeps failing stays out longer.
- When the time is over the breaker is ``probing``: one ``GET /health`` goes to the replica.
  A 2xx readmits it (``closed``, failures reset); anything else ejects it again, for longer.
  The replica gets no traffic until a probe succeeds.
- Fail open: at most ``max_ejected_percent`` of the routable replicas are ejected at once
  (rounded down) and never the last routable one, so a fleet-wide failure still reaches
  the engines and surfaces as errors instead of an empty fleet.

`healthy` (the replica is not ejected and its recent success rate, an exponentially
weighted average of its attempts' outcomes, is at least one half; a new replica counts as
healthy) is what the retry budget asks to tell a fleet that has healthy replicas from a
fleet-wide outage.

Ejections and readmissions are logged (one JSON line each under the router's log format)
and counted: ``llmservice_router_ejections_total{replica,reason}`` and
``llmservice_router_ejected{replica}``; `snapshot` is the per-replica state ``/healthz``
reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from llmservice.router.config import OutlierConfig

__all__ = ["CLOSED", "OPEN", "PROBING", "OutlierDetector"]

log = logging.getLogger("llmservice.router.outliers")

CLOSED, OPEN, PROBING = "closed", "open", "probing"
# The success rate moves a quarter of the way towards each outcome: three failures in a row
# take a replica from 1.0 to 0.42, below the healthy mark; a few successes bring it back.
SUCCESS_RATE_WEIGHT = 0.25
HEALTHY_SUCCESS_RATE = 0.5


@dataclass(slots=True)
class _Breaker:
    state: str = CLOSED
    consecutive_failures: int = 0
    ejections: int = 0
    # Recent success rate, weighted towards the latest attempts (a new replica: 1.0).
    success_rate: float = 1.0
    probe: asyncio.Task[None] | None = None


class OutlierDetector(Collector):
    """Breakers for the routable replicas.

    ``on_eject(name, ejected)`` tells the dispatcher to block or unblock a replica;
    ``probe(name)`` answers whether ``GET /health`` on it succeeded.
    """

    def __init__(
        self,
        config: OutlierConfig,
        on_eject: Callable[[str, bool], None],
        probe: Callable[[str], Awaitable[bool]],
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.on_eject = on_eject
        self.probe = probe
        self.clock = clock
        self.breakers: dict[str, _Breaker] = {}
        self.ejected = 0
        self.ejections_total: dict[tuple[str, str], int] = {}
        if registry is not None:
            registry.register(self)

    # -- replica set --------------------------------------------------------------------

    def update(self, replicas: Collection[str]) -> None:
        """The routable replicas changed: new ones start closed, gone ones are forgotten."""
        for name in self.breakers.keys() - set(replicas):
            breaker = self.breakers.pop(name)
            if breaker.state != CLOSED:
                self.ejected -= 1
            if breaker.probe is not None:
                breaker.probe.cancel()
        for name in replicas:
            self.breakers.setdefault(name, _Breaker())

    async def close(self) -> None:
        tasks = [b.probe for b in self.breakers.values() if b.probe is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- outcomes -----------------------------------------------------------------------

    def success(self, name: str) -> None:
        breaker = self.breakers.get(name)
        if breaker is not None:
            breaker.consecutive_failures = 0
            breaker.success_rate += (1.0 - breaker.success_rate) * SUCCESS_RATE_WEIGHT

    def failure(self, name: str, reason: str) -> None:
        """An attempt on ``name`` failed for ``reason`` (connect, reset, 5xx)."""
        breaker = self.breakers.get(name)
        if breaker is None:
            return
        breaker.success_rate -= breaker.success_rate * SUCCESS_RATE_WEIGHT
        breaker.consecutive_failures += 1
        threshold = self.config.consecutive_failures
        if (
            threshold
            and breaker.state == CLOSED
            and breaker.consecutive_failures >= threshold
            and self._may_eject()
        ):
            self._eject(name, breaker, reason)

    def healthy(self, name: str) -> bool:
        """Whether ``name`` takes traffic and most of its recent attempts succeeded."""
        breaker = self.breakers.get(name)
        return (
            breaker is not None
            and breaker.state == CLOSED
            and breaker.success_rate >= HEALTHY_SUCCESS_RATE
        )

    def _may_eject(self) -> bool:
        routable = len(self.breakers)
        limit = routable * self.config.max_ejected_percent // 100
        return self.ejected < limit and routable - self.ejected > 1

    # -- ejection and readmission -------------------------------------------------------

    def _eject(self, name: str, breaker: _Breaker, reason: str) -> None:
        if breaker.state == CLOSED:
            self.ejected += 1
            self.on_eject(name, True)
        breaker.state = OPEN
        breaker.ejections += 1
        key = (name, reason)
        self.ejections_total[key] = self.ejections_total.get(key, 0) + 1
        seconds = min(self.config.base_ejection * breaker.ejections, self.config.max_ejection)
        log.warning(
            "replica %s ejected for %.1f s after %s (ejection %d)",
            name,
            seconds,
            f"{breaker.consecutive_failures} consecutive failures ({reason})"
            if reason != "probe"
            else "a failed health probe",
            breaker.ejections,
        )
        breaker.probe = asyncio.get_running_loop().create_task(
            self._probe_after(name, breaker, seconds)
        )

    async def _probe_after(self, name: str, breaker: _Breaker, seconds: float) -> None:
        await asyncio.sleep(seconds)  # the ejection time, not a wait for a condition
        breaker.state = PROBING
        try:
            ok = await self.probe(name)
        except Exception:  # a probe that cannot even run counts as failed
            log.exception("health probe of %s failed to run", name)
            ok = False
        if self.breakers.get(name) is not breaker:
            return  # the replica left while the probe ran
        breaker.probe = None
        if not ok:
            self._eject(name, breaker, "probe")
            return
        breaker.state = CLOSED
        breaker.consecutive_failures = 0
        breaker.success_rate = 1.0
        self.ejected -= 1
        self.on_eject(name, False)
        log.warning("replica %s readmitted after a successful health probe", name)

    # -- reporting ----------------------------------------------------------------------

    def snapshot(self) -> dict[str, dict[str, object]]:
        """Each replica's breaker, for ``/healthz``."""
        return {
            name: {
                "state": breaker.state,
                "consecutive_failures": breaker.consecutive_failures,
                "ejections": breaker.ejections,
            }
            for name, breaker in sorted(self.breakers.items())
        }

    def collect(self) -> Iterator[Metric]:
        total = CounterMetricFamily(
            "llmservice_router_ejections",
            "Replicas ejected by the outlier detector, by reason.",
            labels=["replica", "reason"],
        )
        for labels, value in sorted(self.ejections_total.items()):
            total.add_metric(list(labels), value)
        yield total
        ejected = GaugeMetricFamily(
            "llmservice_router_ejected",
            "1 while a replica is ejected (open or probing), else 0.",
            labels=["replica"],
        )
        for name, breaker in sorted(self.breakers.items()):
            ejected.add_metric([name], int(breaker.state != CLOSED))
        yield ejected
