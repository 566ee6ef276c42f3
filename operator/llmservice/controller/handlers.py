"""kopf wiring: thin handlers that feed the store and call `reconcile()`.

- LLMService create/update/resume call `reconcile()` for that object, and `periodic` calls
  it for every LLMService at a fixed interval;
- every watched child and engine Pod is mirrored into the store, and a change to one asks
  for a (debounced) reconcile of its LLMService, so readiness shows up without waiting for
  the next interval and a deleted or edited child is restored at once.
Reconciles of one LLMService never overlap: they are serialised by a per-object lock.
No deletion handler, timer or daemon, and so no finalizer: children go through garbage
collection, and an LLMService deleted while the operator is down is gone at once. kopf
removes the finalizer an older version left on an LLMService, since no handler needs it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf

from llmservice.controller.kinds import CHILD_KINDS, LLMSERVICE, SERVICE_MONITOR_CRD
from llmservice.controller.kube import ClusterAPI, is_transient
from llmservice.controller.mounts import FailedMountLookup
from llmservice.controller.reconcile import Context, reconcile
from llmservice.controller.refusals import RefusedChildren
from llmservice.controller.render_cache import RenderCache
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
    store: ClusterStore = field(default_factory=ClusterStore)
    renders: RenderCache = field(default_factory=RenderCache)
    refused: RefusedChildren = field(default_factory=RefusedChildren)
    mounts: FailedMountLookup = field(default_factory=FailedMountLookup)
    locks: dict[tuple[str, str], asyncio.Lock] = field(default_factory=dict)
    pending: set[tuple[str, str]] = field(default_factory=set)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    crd_checked_at: float = float("-inf")
    crd_installed: bool = False
    crd_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def monitoring_crd_installed(self) -> bool:
        # One check at a time: reconciles running together share its answer.
        async with self.crd_lock:
            now = time.monotonic()
            if now - self.crd_checked_at >= CRD_CHECK_TTL_SECONDS:
                self.crd_installed = await self.api.crd_exists(SERVICE_MONITOR_CRD)
                self.crd_checked_at = now
        return self.crd_installed

    async def reconcile(self, body: Mapping[str, Any]) -> None:
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        lock = self.locks.setdefault(key, asyncio.Lock())
        async with lock:
            # The store holds the newest copy seen by the watch (it may be newer than `body`).
            latest = self.store.get("LLMService", *key) or plain(body)
            context = Context(
                api=self.api,
                store=self.store,
                throughput=self.throughput,
                monitoring_crd_installed=await self.monitoring_crd_installed(),
                renders=self.renders,
                refused=self.refused,
                mounts=self.mounts,
            )
            outcome = await reconcile(latest, context)
            if outcome.applied or outcome.deleted:
                log.info(
                    "Reconciled LLMService: applied %d, deleted %d",
                    len(outcome.applied), len(outcome.deleted), extra=about(*key),
                )  # fmt: skip

    def request(self, namespace: str, name: str) -> None:
        """Ask for a reconcile soon; requests arriving together are coalesced."""
        key = (namespace, name)
        if key in self.pending or self.store.get("LLMService", *key) is None:
            return
        self.pending.add(key)
        task = asyncio.create_task(self._run_requested(key))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run_requested(self, key: tuple[str, str]) -> None:
        await asyncio.sleep(DEBOUNCE_SECONDS)
        self.pending.discard(key)
        body = self.store.get("LLMService", *key)
        if body is None:
            return
        try:
            await self.reconcile(body)
        except Exception as error:  # the periodic reconcile retries; this task must not die
            log.warning("Reconcile failed, retrying next interval: %s", error, extra=about(*key))


def _backoff(retry: int) -> float:
    return float(min(MAX_BACKOFF_SECONDS, 2 ** max(retry, 0)))


def register(registry: kopf.OperatorRegistry, state: OperatorState) -> None:
    """Attach every handler to `registry`, closing over `state`."""
    group, version, plural = LLMSERVICE.group, LLMSERVICE.version, LLMSERVICE.plural

    async def reconcile_handler(body: kopf.Body, retry: int, **_: Any) -> None:
        try:
            await state.reconcile(body)
        except Exception as error:
            if is_transient(error):
                raise kopf.TemporaryError(
                    f"API error, retrying: {error}", delay=_backoff(retry)
                ) from error
            raise

    for decorator in (
        kopf.on.create(group, version, plural, registry=registry, id="reconcile-on-create"),
        kopf.on.update(
            group, version, plural, registry=registry, id="reconcile-on-update", field="spec"
        ),
        kopf.on.resume(group, version, plural, registry=registry, id="reconcile-on-resume"),
    ):
        decorator(reconcile_handler)

    @kopf.on.event(group, version, plural, registry=registry, id="mirror-llmservice")
    async def mirror_llmservice(event: kopf.RawEvent, **_: Any) -> None:
        obj = event["object"]
        if event.get("type") == "DELETED":
            state.store.remove(obj)
            state.throughput.forget(obj["metadata"]["namespace"], obj["metadata"]["name"])
            state.renders.forget(obj["metadata"]["namespace"], obj["metadata"]["name"])
            state.refused.forget((obj["metadata"]["namespace"], obj["metadata"]["name"]))
        else:
            state.store.upsert(obj)

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
    """Operator settings: explicit timeouts, annotation storage, server-side label filters."""
    # Progress and diff-base in annotations: the status schema is ours alone.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix="serving.llmservice.dev"
    )
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="serving.llmservice.dev", key="last-handled-configuration"
    )
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
