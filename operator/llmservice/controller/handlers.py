"""kopf wiring: thin handlers that feed the store and ask for `reconcile()`.

- every LLMService, watched child and engine Pod is mirrored into the store, and a change
  to one (the initial listing included) asks for a debounced reconcile of its LLMService,
  so a new spec is acted on, readiness shows up, and a deleted or edited child is restored
  at once; `periodic` reconciles every LLMService again at a fixed interval;
- a reconcile that fails on a transient API error is asked for again with backoff.
Reconciles of one LLMService never overlap: they are serialised by a per-object lock.

Only event handlers, on purpose: kopf keeps no state on the LLMService. Its create/update
handlers would keep a copy of the whole spec in an annotation, which the API server refuses
once the spec passes the 256 KiB that annotations may hold (large env values, many ingress
annotations); and timers or daemons would need a finalizer, so that an LLMService deleted
while the operator is down would stay Terminating. Children go through garbage collection.
kopf removes the finalizer an older version left on an LLMService, since nothing needs it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf

from llmservice.controller.autoscaler import Autoscaler
from llmservice.controller.kinds import (
    CHILD_KINDS,
    LLMSERVICE,
    PROMETHEUS_RULE_CRD,
    SERVICE_MONITOR_CRD,
)
from llmservice.controller.kube import ClusterAPI, is_transient
from llmservice.controller.metrics import OperatorMetrics
from llmservice.controller.mounts import FailedMountLookup
from llmservice.controller.reconcile import Context, reconcile
from llmservice.controller.refusals import RefusedChildren
from llmservice.controller.render_cache import RenderCache
from llmservice.controller.router_keys import RouterKeysTracker
from llmservice.controller.store import INSTANCE_LABEL, ClusterStore
from llmservice.controller.throughput import ThroughputTracker
from llmservice.logs import about
from llmservice.render.naming import MANAGED_BY

log = logging.getLogger(__name__)

MANAGED_SELECTOR = f"app.kubernetes.io/managed-by={MANAGED_BY}"
DEBOUNCE_SECONDS = 0.3
CRD_CHECK_TTL_SECONDS = 30.0
MAX_BACKOFF_SECONDS = 60.0


def plain(value: Any) -> Any:
    """A deep copy made of plain dicts and lists (kopf hands out read-only views)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


@dataclass
class OperatorState:
    """Everything the handlers share, created once per operator run (no module globals)."""

    api: ClusterAPI
    throughput: ThroughputTracker
    router_keys: RouterKeysTracker | None = None
    autoscaler: Autoscaler | None = None
    store: ClusterStore = field(default_factory=ClusterStore)
    renders: RenderCache = field(default_factory=RenderCache)
    refused: RefusedChildren = field(default_factory=RefusedChildren)
    mounts: FailedMountLookup = field(default_factory=FailedMountLookup)
    locks: dict[tuple[str, str], asyncio.Lock] = field(default_factory=dict)
    pending: set[tuple[str, str]] = field(default_factory=set)
    retries: dict[tuple[str, str], int] = field(default_factory=dict)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    crd_checked_at: float = float("-inf")
    installed_crds: frozenset[str] = frozenset()
    crd_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    metrics: OperatorMetrics | None = None

    async def monitoring_crds(self) -> frozenset[str]:
        """Which Prometheus Operator CRDs exist, checked at most every CRD_CHECK_TTL_SECONDS."""
        # One check at a time: reconciles running together share its answer.
        async with self.crd_lock:
            now = time.monotonic()
            if now - self.crd_checked_at >= CRD_CHECK_TTL_SECONDS:
                crds = (SERVICE_MONITOR_CRD, PROMETHEUS_RULE_CRD)
                self.installed_crds = frozenset(
                    [crd for crd in crds if await self.api.crd_exists(crd)]
                )
                self.crd_checked_at = now
        return self.installed_crds

    def autoscaled(self) -> list[dict[str, Any]]:
        """The LLMServices whose engine the operator's autoscaler sizes."""
        return [body for body in self.store.llmservices() if autoscaling_enabled(body)]

    async def reconcile(self, body: Mapping[str, Any]) -> None:
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        lock = self.locks.setdefault(key, asyncio.Lock())
        async with lock:
            # The store holds the newest copy seen by the watch (it may be newer than `body`).
            latest = self.store.get("LLMService", *key) or plain(body)
            crds = await self.monitoring_crds()
            context = Context(
                api=self.api,
                store=self.store,
                throughput=self.throughput,
                monitoring_crd_installed=SERVICE_MONITOR_CRD in crds,
                prometheus_rule_crd_installed=PROMETHEUS_RULE_CRD in crds,
                renders=self.renders,
                refused=self.refused,
                mounts=self.mounts,
                router_keys=self.router_keys,
                autoscaler=self.autoscaler,
                on_scaling=self.metrics.scaled if self.metrics is not None else None,
            )
            started = time.monotonic()
            ok = False
            try:
                outcome = await reconcile(latest, context)
                ok = True
            finally:
                if self.metrics is not None:
                    self.metrics.reconciled(time.monotonic() - started, ok)
            if outcome.applied or outcome.deleted:
                log.info(
                    "Reconciled LLMService: applied %d, deleted %d",
                    len(outcome.applied), len(outcome.deleted), extra=about(*key),
                )  # fmt: skip

    def request(self, namespace: str, name: str, delay: float = DEBOUNCE_SECONDS) -> None:
        """Ask for a reconcile after `delay`; requests arriving meanwhile are coalesced."""
        key = (namespace, name)
        if key in self.pending or self.store.get("LLMService", *key) is None:
            return
        self.pending.add(key)
        task = asyncio.create_task(self._run_requested(key, delay))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run_requested(self, key: tuple[str, str], delay: float) -> None:
        await asyncio.sleep(delay)
        self.pending.discard(key)
        body = self.store.get("LLMService", *key)
        if body is None:
            self.retries.pop(key, None)
            return
        try:
            await self.reconcile(body)
        except Exception as error:  # this task must not die with it
            if not is_transient(error):
                log.warning("Reconcile failed, retrying next interval: %s", error,
                            extra=about(*key))  # fmt: skip
                return
            retry = self.retries.get(key, 0)
            self.retries[key] = retry + 1
            log.warning("Reconcile failed on an API error, retrying in %.0fs: %s",
                        backoff(retry), error, extra=about(*key))  # fmt: skip
            self.request(*key, delay=backoff(retry))
        else:
            self.retries.pop(key, None)


def autoscaling_enabled(body: Mapping[str, Any]) -> bool:
    engine = (body.get("spec") or {}).get("engine") or {}
    return bool((engine.get("autoscaling") or {}).get("enabled"))


def backoff(retry: int) -> float:
    """Seconds before retry number `retry` (from 0): 1, 2, 4, ... up to a minute."""
    return float(min(MAX_BACKOFF_SECONDS, 2 ** max(retry, 0)))


def register(registry: kopf.OperatorRegistry, state: OperatorState) -> None:
    """Attach every handler to `registry`, closing over `state`."""
    group, version, plural = LLMSERVICE.group, LLMSERVICE.version, LLMSERVICE.plural

    @kopf.on.event(group, version, plural, registry=registry, id="mirror-llmservice")
    async def mirror_llmservice(event: kopf.RawEvent, **_: Any) -> None:
        obj = event["object"]
        key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
        if event.get("type") == "DELETED":
            state.store.remove(obj)
            state.throughput.forget(*key)
            if state.router_keys is not None:
                state.router_keys.forget(*key)
            if state.autoscaler is not None:
                state.autoscaler.forget(*key)
            state.renders.forget(*key)
            state.refused.forget(key)
        else:
            state.store.upsert(obj)
            state.request(*key)

    async def mirror_child(event: kopf.RawEvent, **_: Any) -> None:
        obj = event["object"]
        if event.get("type") == "DELETED":
            state.store.remove(obj)
        else:
            state.store.upsert(obj)
        meta = obj.get("metadata") or {}
        instance = (meta.get("labels") or {}).get(INSTANCE_LABEL)
        if instance:
            state.request(meta.get("namespace", ""), instance)

    watched = [(kind.group, kind.version, kind.plural) for kind in CHILD_KINDS]
    watched.append(("", "v1", "pods"))
    for child_group, child_version, child_plural in watched:
        kopf.on.event(
            group=child_group,
            version=child_version,
            plural=child_plural,
            registry=registry,
            id=f"mirror-{child_plural}",
            labels={"app.kubernetes.io/managed-by": MANAGED_BY},
        )(mirror_child)


def configure(settings: kopf.OperatorSettings, instance: str) -> None:
    """Operator settings: explicit timeouts, event posting, server-side label filters."""
    settings.posting.level = logging.WARNING
    settings.posting.reporting_component = "llmservice-operator"
    settings.posting.reporting_instance = instance
    settings.networking.request_timeout = 30
    settings.networking.connect_timeout = 10
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    settings.batching.error_delays = (1, 2, 5, 10, 30, 60)
    # Watch only the operator's own children and Pods, not every object of their kinds.
    child_plurals = {kind.plural for kind in CHILD_KINDS} | {"pods"}
    settings.watching.label_selectors[lambda resource: resource.plural in child_plurals] = (
        MANAGED_SELECTOR
    )
