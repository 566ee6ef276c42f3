"""`reconcile()`: one level-based, idempotent pass over one LLMService.

1. Validate the spec with the CRD's own rules; a spec that cannot work is Stalled.
2. Render every child. Apply (server-side, one field manager, force) only those whose live
   copy differs from the rendered one, so a converged LLMService costs no write at all.
3. Delete the children this LLMService controls that are no longer rendered.
4. Observe the children and engine Pods, scrape throughput when due, and patch the status
   only if it changed. Notable transitions are also recorded as Events.
Transient API errors propagate (the caller retries with backoff); others become conditions.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubernetes import client

from llmservice.api import InvalidLLMService, LLMService, parse_llmservice
from llmservice.controller import conditions as c
from llmservice.controller import observe
from llmservice.controller.compare import is_subset
from llmservice.controller.conditions import Observation
from llmservice.controller.kinds import BY_KIND, SERVICE_MONITOR, key_of
from llmservice.controller.kube import ClusterAPI, is_transient
from llmservice.controller.mounts import FailedMountLookup
from llmservice.controller.store import ClusterStore
from llmservice.controller.throughput import Rates, ThroughputTracker
from llmservice.render import naming, render_all
from llmservice.render.services import endpoint_url

log = logging.getLogger(__name__)


Rendered = tuple[LLMService, list[dict[str, Any]]] | InvalidLLMService


class RenderCache:
    """Validation and rendering of each LLMService, kept while its generation is unchanged.

    A spec is immutable within one generation, and the timer reconciles every LLMService
    every few seconds: validating and rendering again each time would cost tens of
    milliseconds per object for nothing. One entry per LLMService, so it stays bounded.
    """

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], tuple[str, int, Rendered]] = {}

    def get(self, body: Mapping[str, Any]) -> Rendered:
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        uid, generation = str(meta.get("uid")), int(meta.get("generation", 0))
        cached = self._entries.get(key)
        if cached is not None and cached[:2] == (uid, generation):
            return cached[2]
        document = {k: body[k] for k in ("apiVersion", "kind", "metadata", "spec") if k in body}
        result: Rendered
        try:
            service = parse_llmservice(document)
            result = (service, render_all(service))
        except InvalidLLMService as invalid:
            result = invalid
        self._entries[key] = (uid, generation, result)
        return result

    def forget(self, namespace: str, name: str) -> None:
        self._entries.pop((namespace, name), None)


@dataclass
class Context:
    """What one reconcile needs, injected by the handlers."""

    api: ClusterAPI
    store: ClusterStore
    throughput: ThroughputTracker
    monitoring_crd_installed: bool
    renders: RenderCache = field(default_factory=RenderCache)
    mounts: FailedMountLookup = field(default_factory=FailedMountLookup)
    now: float = field(default_factory=time.monotonic)


@dataclass
class Outcome:
    applied: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    status_written: bool = False


def _timestamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _controlled_by(obj: Mapping[str, Any], uid: str) -> bool:
    return any(
        ref.get("controller") and ref.get("uid") == uid
        for ref in obj["metadata"].get("ownerReferences") or []
    )


def _pod_ready(pod: Mapping[str, Any]) -> bool:
    status = pod.get("status") or {}
    ready = any(
        cond.get("type") == "Ready" and cond.get("status") == "True"
        for cond in status.get("conditions") or []
    )
    return ready and bool(status.get("podIP")) and not pod["metadata"].get("deletionTimestamp")


def _rates_from_status(status: Mapping[str, Any]) -> Rates | None:
    throughput = status.get("throughput")
    if not throughput:
        return None
    return Rates(
        requests_per_second=throughput.get("requestsPerSecond", 0.0),
        prompt_tokens_per_second=throughput.get("promptTokensPerSecond", 0.0),
        generation_tokens_per_second=throughput.get("generationTokensPerSecond", 0.0),
        window_seconds=throughput.get("windowSeconds", 0.0),
    )


def _throughput_status(rates: Rates) -> dict[str, Any]:
    return {
        "requestsPerSecond": rates.requests_per_second,
        "promptTokensPerSecond": rates.prompt_tokens_per_second,
        "generationTokensPerSecond": rates.generation_tokens_per_second,
        "windowSeconds": rates.window_seconds,
        "observedAt": _timestamp(),
    }


def _merge(
    current: list[dict[str, Any]], observations: list[Observation], generation: int
) -> list[dict[str, Any]]:
    now = _timestamp()
    for observation in observations:
        current = c.set_condition(current, observation, generation, now)
    return current


async def _record_transitions(
    ctx: Context, body: Mapping[str, Any], before: list[dict[str, Any]], after: list[dict[str, Any]]
) -> None:
    """Events for the transitions a user wants to see in `kubectl describe`."""
    for condition in after:
        previous = c.find(before, condition["type"])
        if (
            previous is not None
            and previous.get("status") == condition["status"]
            and (previous.get("reason") == condition["reason"])
        ):
            continue
        if condition["type"] == c.STALLED and condition["status"] == c.TRUE:
            await ctx.api.emit_event(body, "Warning", condition["reason"], condition["message"])
        elif condition["type"] == c.READY and condition["status"] == c.TRUE:
            await ctx.api.emit_event(body, "Normal", "Ready", condition["message"])


async def _write_status(
    ctx: Context, body: Mapping[str, Any], status: dict[str, Any], outcome: Outcome
) -> None:
    meta = body["metadata"]
    current = dict(body.get("status") or {})
    if status == current:
        return
    await ctx.api.patch_status(meta["namespace"], meta["name"], status)
    outcome.status_written = True
    await _record_transitions(ctx, body, current.get("conditions") or [], status["conditions"])


async def _report_transient(
    ctx: Context,
    body: Mapping[str, Any],
    conditions: list[dict[str, Any]],
    generation: int,
    error: client.ApiException,
) -> None:
    """Say `Reconciling=True` (reason APIError) before the caller retries with backoff.

    Best effort: when the API server is the problem, this write may fail too.
    """
    message = f"the API server answered {error.status} {error.reason}; retrying with backoff"
    observation = Observation(c.RECONCILING, c.TRUE, c.API_ERROR, message)
    status = {
        **(body.get("status") or {}),
        "conditions": _merge(conditions, [observation], generation),
    }
    meta = body["metadata"]
    try:
        await ctx.api.patch_status(meta["namespace"], meta["name"], status)
    except (client.ApiException, OSError) as second:
        log.warning("Could not report the API error in the status: %s", second)


async def _failed_mounts(
    ctx: Context, namespace: str, pods: list[dict[str, Any]]
) -> dict[str, str]:
    """FailedMount messages for the Pods waiting on volumes; no request when none waits."""
    if not observe.mounting_pods(pods):
        return {}
    return await ctx.mounts.get(ctx.api, namespace)


async def reconcile(body: Mapping[str, Any], ctx: Context) -> Outcome:
    """Bring one LLMService's children and status in line with its spec."""
    outcome = Outcome()
    meta = body["metadata"]
    namespace, name, generation = meta["namespace"], meta["name"], meta.get("generation", 0)
    current_status = dict(body.get("status") or {})
    conditions = list(current_status.get("conditions") or [])
    ctx.throughput.restore(namespace, name, _rates_from_status(current_status))

    rendered = ctx.renders.get(body)
    if isinstance(rendered, InvalidLLMService):
        message = "; ".join(str(error) for error in rendered.errors)
        invalid_status = {
            **current_status,
            "observedGeneration": generation,
            "conditions": _merge(
                conditions, observe.invalid_spec_observations(message), generation
            ),
        }
        await _write_status(ctx, body, invalid_status, outcome)
        return outcome

    service, desired = rendered
    monitoring = Observation(
        c.MONITORING_CONFIGURED, c.TRUE, c.CONFIGURED, "ServiceMonitors applied"
    )
    if not service.spec.monitoring.service_monitor:
        monitoring = Observation(
            c.MONITORING_CONFIGURED, c.TRUE, c.DISABLED, "monitoring.serviceMonitor is false"
        )
    elif not ctx.monitoring_crd_installed:
        desired = [obj for obj in desired if obj["kind"] != SERVICE_MONITOR.kind]
        monitoring = Observation(
            c.MONITORING_CONFIGURED,
            c.FALSE,
            c.CRD_NOT_INSTALLED,
            "the Prometheus Operator CRD servicemonitors.monitoring.coreos.com is not installed",
        )

    live_children = ctx.store.children(namespace, name)
    apply_error: str | None = None
    for obj in desired:
        key = key_of(obj)
        if is_subset(obj, live_children.get(key)):
            continue
        try:
            live = await ctx.api.apply(BY_KIND[obj["kind"]], obj)
        except client.ApiException as error:
            if is_transient(error):
                await _report_transient(ctx, body, conditions, generation, error)
                raise
            apply_error = f"{obj['kind']} {key[2]}: {error.reason} {error.body or ''}".strip()[
                :2000
            ]
            log.warning("Failed to apply %s %s/%s: %s", obj["kind"], namespace, key[2], apply_error)
            continue
        ctx.store.upsert(live)
        outcome.applied.append(f"{obj['kind']} {key[2]}")
        log.info("Applied %s %s/%s", obj["kind"], namespace, key[2])

    wanted = {key_of(obj) for obj in desired}
    uid = str(meta.get("uid"))
    for key, live in live_children.items():
        if key in wanted or key[0] not in BY_KIND or not _controlled_by(live, uid):
            continue
        await ctx.api.delete(BY_KIND[key[0]], key[1], key[2])
        ctx.store.remove(live)
        outcome.deleted.append(f"{key[0]} {key[2]}")
        log.info("Deleted %s %s/%s", key[0], key[1], key[2])

    engine_state = observe.deployment_state(
        ctx.store.get("Deployment", namespace, naming.engine_name(service)),
        service.spec.engine.replicas,
    )
    router_state = observe.deployment_state(
        ctx.store.get("Deployment", namespace, naming.router_name(service)),
        service.spec.router.replicas,
    )
    pods = ctx.store.pods(namespace, name, naming.ENGINE)
    router_pods = ctx.store.pods(namespace, name, naming.ROUTER)
    failed_mounts = await _failed_mounts(ctx, namespace, [*pods, *router_pods])
    engine = observe.engine_observation(engine_state, pods, failed_mounts)
    router = observe.router_observation(router_state, router_pods, failed_mounts)
    ready, reconciling, stalled = observe.summary(engine, router, apply_error)
    observations = [ready, reconciling, stalled, engine, router, monitoring]

    targets = [
        (p["metadata"]["name"], f"http://{p['status']['podIP']}:{naming.ENGINE_PORT}/metrics")
        for p in pods
        if _pod_ready(p)
    ]
    rates = await ctx.throughput.observe(namespace, name, targets, ctx.now)

    status: dict[str, Any] = {
        **current_status,
        "observedGeneration": generation,
        "conditions": _merge(conditions, observations, generation),
        "replicas": engine_state.desired,
        "readyReplicas": engine_state.ready,
        "replicaSummary": f"{engine_state.ready}/{engine_state.desired}",
        "routerReadyReplicas": router_state.ready,
        "endpoint": endpoint_url(service),
    }
    if rates is not None:
        status["throughput"] = _throughput_status(rates)
    await _write_status(ctx, body, status, outcome)
    return outcome
