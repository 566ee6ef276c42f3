"""Feeds the throughput gate: scrapes each replica's engine metrics on an interval.

One GET of ``/metrics`` per routable replica per ``interval`` seconds, all replicas at once,
off the request path. A replica that does not answer keeps its last state (an engine that is
down is discovery's business, not the gate's). See `llmservice.router.admission.gate`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping

import httpx

from llmservice.router.admission.gate import ThroughputGate, parse_engine_metrics

__all__ = ["GateScraper"]

log = logging.getLogger(__name__)


class GateScraper:
    """Scrapes ``replicas()`` (name -> base URL); after each sample of a replica, tells
    ``on_sample`` its allowance (new requests until the next sample; None: no limit)."""

    def __init__(
        self,
        gate: ThroughputGate,
        replicas: Callable[[], Mapping[str, str]],
        on_sample: Callable[[str, int | None], None],
        *,
        interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.gate = gate
        self.replicas = replicas
        self.on_sample = on_sample
        self.interval = interval
        self.clock = clock
        self._task: asyncio.Task[None] | None = None
        self._known: set[str] = set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        timeout = httpx.Timeout(self.interval)
        async with httpx.AsyncClient(timeout=timeout) as client:
            while True:
                await self.scrape_once(client)
                await asyncio.sleep(self.interval)

    async def scrape_once(self, client: httpx.AsyncClient) -> None:
        replicas = dict(self.replicas())
        for gone in self._known - replicas.keys():
            self.gate.forget(gone)
            self.on_sample(gone, None)
        self._known = set(replicas)
        names = list(replicas)
        answers = await asyncio.gather(
            *(client.get(replicas[name].rstrip("/") + "/metrics") for name in names),
            return_exceptions=True,
        )
        now = self.clock()
        for name, answer in zip(names, answers, strict=True):
            if isinstance(answer, BaseException):
                log.debug("engine metrics of %s unavailable: %r", name, answer)
                continue
            sample = parse_engine_metrics(answer.text) if answer.status_code == 200 else None
            if sample is not None:
                self.gate.observe(name, now, sample)
                self.on_sample(name, self.gate.allowance(name))
