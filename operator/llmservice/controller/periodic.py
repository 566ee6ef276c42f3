"""Reconcile every LLMService again at a fixed interval, whatever the watches said.

Events can be missed (a child changed while the watch reconnected, a Pod that never became
ready), and throughput is only measured on a reconcile: so every LLMService the watch has
seen is reconciled each `interval`. This runs beside kopf rather than as a kopf timer,
because kopf puts a finalizer on every object with a timer, and then an LLMService cannot
be deleted while the operator is down. Nothing here needs one: children go with their owner
through garbage collection.

Reconciles of one object never overlap: a tick skips an object whose previous reconcile is
still running. A failure is logged and retried on the next tick.

Known limit: with `--peering`, kopf pauses its watches in a standby replica but has no
public signal this loop could follow, so a replica demoted while running keeps reconciling
what its watches last showed. Run one replica (the shipped manifests do).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from llmservice.logs import about

log = logging.getLogger(__name__)

__all__ = ["PeriodicReconciler"]

Key = tuple[str, str]


class PeriodicReconciler:
    """Every `interval` seconds, `reconcile(body)` for each object `listing()` returns."""

    def __init__(
        self,
        listing: Callable[[], Iterable[Mapping[str, Any]]],
        reconcile: Callable[[Mapping[str, Any]], Awaitable[None]],
        interval: float,
    ) -> None:
        self._listing = listing
        self._reconcile = reconcile
        self.interval = interval
        self._running: dict[Key, asyncio.Task[None]] = {}

    @property
    def running(self) -> frozenset[Key]:
        """The objects whose reconcile is in flight."""
        return frozenset(self._running)

    def tick(self) -> list[asyncio.Task[None]]:
        """Start one reconcile per listed object not already being reconciled."""
        started: list[asyncio.Task[None]] = []
        for body in self._listing():
            meta = body["metadata"]
            key = (str(meta["namespace"]), str(meta["name"]))
            if key in self._running:
                continue
            task = asyncio.create_task(self._run(key, body))
            self._running[key] = task
            task.add_done_callback(functools.partial(self._finished, key))
            started.append(task)
        return started

    def _finished(self, key: Key, _: asyncio.Task[None]) -> None:
        self._running.pop(key, None)

    async def _run(self, key: Key, body: Mapping[str, Any]) -> None:
        try:
            await self._reconcile(body)
        except Exception as error:  # one object's failure must not stop the others
            log.warning("Periodic reconcile failed, retrying next interval: %s", error,
                        extra=about(*key))  # fmt: skip

    async def run(self) -> None:
        """Tick until cancelled; cancelling also cancels the reconciles in flight."""
        try:
            while True:
                await asyncio.sleep(self.interval)
                self.tick()
        finally:
            running = list(self._running.values())
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
