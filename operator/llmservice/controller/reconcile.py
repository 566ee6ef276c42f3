"""`reconcile()`: one level-based, idempotent pass over one LLMService.

1. Validate the spec with the CRD's own rules; a spec that cannot work is Stalled.
2. Render every child. Apply (server-side, one field manager, force) only those whose live
   copy differs from the rendered one, so a converged LLMService costs no write at all.
3. Delete the children this LLMService controls that are no longer rendered.
4. Observe the children and engine Pods, scrape throughput (and, with API keys, whether the
   router Pods accepted their keys file) when due, and patch the status only if it changed.
   Notable transitions are also recorded as Events.
A child the API server refuses for its content (422 Invalid, or apply unable to build its
patch) makes the LLMService Stalled with reason InvalidSpec, naming the spec field the
child's field comes from; waiting would not help. Transient API errors propagate (the caller
retries with backoff); other errors become conditions. The status is built through its
model (`LLMServiceStatus`), so it cannot carry a field the CRD does not have.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from pydantic import ValidationError

from llmservice.api import Condition, LLMService, LLMServiceStatus, Throughput
from llmservice.api.status import AutoscalingStatus, ScalingDecision
from llmservice.api.validation import InvalidLLMService
from llmservice.controller import conditions as c
from llmservice.controller import observe
from llmservice.controller.autoscaler import Autoscaler, Evaluation
from llmservice.controller.compare import is_subset
from llmservice.controller.conditions import Observation
from llmservice.controller.fieldpaths import describe
from llmservice.controller.kinds import (
    BY_KIND,
    PROMETHEUS_RULE_CRD,
    SERVICE_MONITOR_CRD,
    key_of,
)
from llmservice.controller.kube import ClusterAPI, is_transient
from llmservice.controller.monitoring import monitoring_children
from llmservice.controller.mounts import FailedMountLookup
from llmservice.controller.refusals import RefusedChildren, api_message, refusal
from llmservice.controller.render_cache import RenderCache
from llmservice.controller.router_keys import RouterKeysTracker
from llmservice.controller.store import ClusterStore
from llmservice.controller.throughput import Rates, ThroughputTracker
from llmservice.logs import about
from llmservice.pods import is_serving
from llmservice.render import naming
from llmservice.render.engine import engine_replicas as rendered_engine_replicas
from llmservice.render.services import endpoint_url

log = logging.getLogger(__name__)


@dataclass
class Context:
    """What one reconcile needs, injected by the handlers."""

    api: ClusterAPI
    store: ClusterStore
    throughput: ThroughputTracker
    monitoring_crd_installed: bool  # the ServiceMonitor CRD
    prometheus_rule_crd_installed: bool = False
    renders: RenderCache = field(default_factory=RenderCache)
    refused: RefusedChildren = field(default_factory=RefusedChildren)
    mounts: FailedMountLookup = field(default_factory=FailedMountLookup)
    now: float = field(default_factory=time.monotonic)
    # None: router Pods are not asked about their API keys file.
    router_keys: RouterKeysTracker | None = None
    # None: engine.autoscaling is not acted on (the rendered engine.replicas is applied).
    autoscaler: Autoscaler | None = None
    # Hears of every scaling step: (namespace, name, reason).
    on_scaling: Callable[[str, str, str], None] | None = None


@dataclass
class Outcome:
    applied: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    status_written: bool = False


def _now() -> datetime:
    # The API server keeps times to the second: finer ones would differ on every read-back.
    return datetime.now(UTC).replace(microsecond=0)


def _controlled_by(obj: Mapping[str, Any], uid: str) -> bool:
    return any(
        ref.get("controller") and ref.get("uid") == uid
        for ref in obj["metadata"].get("ownerReferences") or []
    )


def stored_status(body: Mapping[str, Any]) -> LLMServiceStatus:
    """The status as stored; one the model cannot read is replaced rather than kept."""
    try:
        return LLMServiceStatus.model_validate(body.get("status") or {})
    except ValidationError as error:
        meta = body["metadata"]
        log.warning(
            "Stored status does not match the model, rewriting it: %s",
            error,
            extra=about(meta["namespace"], meta["name"]),
        )
        return LLMServiceStatus()


def _rates_from_status(status: LLMServiceStatus) -> Rates | None:
    throughput = status.throughput
    if throughput is None:
        return None
    return Rates(
        requests_per_second=throughput.requests_per_second,
        prompt_tokens_per_second=throughput.prompt_tokens_per_second,
        generation_tokens_per_second=throughput.generation_tokens_per_second,
        window_seconds=throughput.window_seconds,
    )


def _throughput_status(rates: Rates) -> Throughput:
    return Throughput(
        requests_per_second=rates.requests_per_second,
        prompt_tokens_per_second=rates.prompt_tokens_per_second,
        generation_tokens_per_second=rates.generation_tokens_per_second,
        window_seconds=rates.window_seconds,
        observed_at=_now(),
    )


def _merge(
    current: list[Condition], observations: list[Observation], generation: int
) -> list[Condition]:
    now = _now()
    for observation in observations:
        current = c.set_condition(current, observation, generation, now)
    return current


def _evolve(current: LLMServiceStatus, **changes: Any) -> LLMServiceStatus:
    """`current` with `changes`, validated again: a misspelt field name raises."""
    return LLMServiceStatus.model_validate({**dict(current), **changes})


async def _record_transitions(
    ctx: Context, body: Mapping[str, Any], before: list[Condition], after: list[Condition]
) -> None:
    """Events for the transitions a user wants to see in `kubectl describe`."""
    for condition in after:
        previous = c.find(before, condition.type)
        if (
            previous is not None
            and previous.status == condition.status
            and previous.reason == condition.reason
        ):
            continue
        if condition.type == c.STALLED and condition.status == c.TRUE:
            await ctx.api.emit_event(body, "Warning", condition.reason, condition.message)
        elif condition.type == c.READY and condition.status == c.TRUE:
            await ctx.api.emit_event(body, "Normal", "Ready", condition.message)


async def _write_status(
    ctx: Context,
    body: Mapping[str, Any],
    current: LLMServiceStatus,
    status: LLMServiceStatus,
    outcome: Outcome,
) -> None:
    if status == current:
        return
    await _patch_status(ctx, body, status)
    outcome.status_written = True
    await _record_transitions(ctx, body, current.conditions or [], status.conditions or [])


async def _patch_status(
    ctx: Context, body: Mapping[str, Any], status: LLMServiceStatus, *, onto_copy: bool = True
) -> None:
    """Write ``status``, worked out from ``body`` (the store's copy), and put the object
    written in the store at once.

    ``onto_copy``: onto that copy's version only (409 Conflict otherwise, and the reconcile
    runs again on the newer copy). Else the next reconcile, often under way before the
    watch brings this write back, would start from the older status: it would write that
    status's autoscaling decision and transitions over this one's, or find nothing to write
    when its older copy already said what this write replaced.
    """
    meta = body["metadata"]
    version = meta.get("resourceVersion")
    written = await ctx.api.patch_status(
        meta["namespace"], meta["name"], status, version if onto_copy else None
    )
    ctx.store.upsert_over(written, version)


async def _report_transient(
    ctx: Context,
    body: Mapping[str, Any],
    current: LLMServiceStatus,
    generation: int,
    error: client.ApiException,
) -> None:
    """Say `Reconciling=True` (reason APIError) before the caller retries with backoff.

    Best effort: when the API server is the problem, this write may fail too.
    """
    message = f"the API server answered {error.status} {error.reason}; retrying with backoff"
    observation = Observation(c.RECONCILING, c.TRUE, c.API_ERROR, message)
    status = _evolve(
        current, conditions=_merge(current.conditions or [], [observation], generation)
    )
    meta = body["metadata"]
    try:
        await _patch_status(ctx, body, status)
    except (client.ApiException, OSError) as second:
        log.warning(
            "Could not report the API error in the status: %s",
            second,
            extra=about(meta["namespace"], meta["name"]),
        )


async def _failed_mounts(
    ctx: Context, namespace: str, pods: list[dict[str, Any]]
) -> dict[str, str]:
    """FailedMount messages for the Pods waiting on volumes; no request when none waits."""
    if not observe.mounting_pods(pods):
        return {}
    return await ctx.mounts.get(ctx.api, namespace)


@dataclass
class Applied:
    """What applying the desired children found: refusals (the spec's fault) or other errors."""

    invalid: list[str] = field(default_factory=list)
    error: str | None = None


async def _apply_children(
    ctx: Context,
    body: Mapping[str, Any],
    service: LLMService,
    desired: list[dict[str, Any]],
    current: LLMServiceStatus,
    outcome: Outcome,
) -> Applied:
    meta = body["metadata"]
    namespace, name, generation = meta["namespace"], meta["name"], meta.get("generation", 0)
    owner, uid = (namespace, name), str(meta.get("uid"))
    live_children = ctx.store.children(namespace, name)
    found = Applied()
    for obj in desired:
        key = key_of(obj)
        child = (key[0], key[2])  # kind and name: the namespace is the owner's
        live = live_children.get(key)
        if is_subset(obj, live):
            ctx.refused.clear(owner, child)
            continue
        stamp = (uid, generation, str(((live or {}).get("metadata") or {}).get("resourceVersion")))
        remembered = ctx.refused.recall(owner, child, stamp)
        if remembered is not None:
            found.invalid.append(remembered)
            continue
        try:
            applied = await ctx.api.apply(BY_KIND[obj["kind"]], obj)
        except client.ApiException as error:
            refused = refusal(error, obj)
            if refused is not None:
                message = describe(refused, obj, service)
                ctx.refused.remember(owner, child, stamp, message)
                found.invalid.append(message)
                log.warning("Refused %s %s: %s", obj["kind"], key[2], message,
                            extra=about(namespace, name))  # fmt: skip
                continue
            if is_transient(error):
                await _report_transient(ctx, body, current, generation, error)
                raise
            found.error = f"{obj['kind']} {key[2]}: {api_message(error)}"[:2000]
            log.warning("Failed to apply %s %s: %s", obj["kind"], key[2], found.error,
                        extra=about(namespace, name))  # fmt: skip
            continue
        ctx.refused.clear(owner, child)
        ctx.store.upsert_over(
            applied, None if live is None else live["metadata"].get("resourceVersion")
        )
        outcome.applied.append(f"{obj['kind']} {key[2]}")
        log.info("Applied %s %s", obj["kind"], key[2], extra=about(namespace, name))

    wanted = {key_of(obj) for obj in desired}
    for key, live in live_children.items():
        if key in wanted or key[0] not in BY_KIND or not _controlled_by(live, uid):
            continue
        await ctx.api.delete(BY_KIND[key[0]], key[1], key[2])
        ctx.store.remove(live)
        outcome.deleted.append(f"{key[0]} {key[2]}")
        log.info("Deleted %s %s", key[0], key[2], extra=about(namespace, name))
    return found


async def _rejected_keys(
    ctx: Context, service: LLMService, router_pods: list[dict[str, Any]]
) -> int:
    """Ready router Pods that rejected a new API keys file (0 without API keys)."""
    if ctx.router_keys is None or service.spec.router.api_keys_secret_ref is None:
        return 0
    namespace, name = service.metadata.namespace or "", service.metadata.name or ""
    targets = _metrics_targets(router_pods, naming.ROUTER_PORT)
    return await ctx.router_keys.rejecting(namespace, name, targets, ctx.now)


def _metrics_targets(pods: list[dict[str, Any]], port: int) -> list[tuple[str, str]]:
    """(name, /metrics URL) of the Pods that serve."""
    return [
        (p["metadata"]["name"], f"http://{p['status']['podIP']}:{port}/metrics")
        for p in pods
        if is_serving(p)
    ]


def _running_targets(pods: list[dict[str, Any]], port: int) -> list[tuple[str, str]]:
    """(name, /metrics URL) of the Pods that run, ready or not.

    A router with no engine replica behind it fails its readiness probe, yet it is the one
    that sees the requests arriving at zero: the autoscaler must hear from it.
    """
    return [
        (p["metadata"]["name"], f"http://{p['status']['podIP']}:{port}/metrics")
        for p in pods
        if (p.get("status") or {}).get("phase") == "Running"
        and (p.get("status") or {}).get("podIP")
        and not p["metadata"].get("deletionTimestamp")
    ]


def _with_engine_replicas(
    desired: list[dict[str, Any]], engine: str, replicas: int
) -> list[dict[str, Any]]:
    """`desired` with the engine Deployment's replicas set (copies; the cached render stays)."""
    result = []
    for obj in desired:
        if obj["kind"] == "Deployment" and obj["metadata"]["name"] == engine:
            obj = {**obj, "spec": {**obj["spec"], "replicas": replicas}}
        result.append(obj)
    return result


@dataclass(frozen=True)
class Scaling:
    """The engine replicas to apply, and the step taken now (if any)."""

    replicas: int
    step: ScalingDecision | None = None


async def _autoscale(
    ctx: Context,
    body: Mapping[str, Any],
    service: LLMService,
    rendered_replicas: int,
    pods: list[dict[str, Any]],
    router_pods: list[dict[str, Any]],
) -> Scaling:
    """The autoscaler's count for the engine Deployment, with an Event for each step.

    The count starts from the live Deployment's replicas (the autoscaler's last step, kept
    in the cluster rather than in memory), or the rendered ones when there is none yet.
    """
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    live = ctx.store.get("Deployment", namespace, naming.engine_name(service))
    current = rendered_replicas
    if live is not None:
        current = int((live.get("spec") or {}).get("replicas", rendered_replicas))
    if ctx.autoscaler is None:
        return Scaling(current)
    evaluation: Evaluation | None = await ctx.autoscaler.evaluate(
        namespace,
        name,
        service.spec.engine.autoscaling,
        current,
        _running_targets(router_pods, naming.ROUTER_PORT),
        _metrics_targets(pods, naming.ENGINE_PORT),
        ctx.now,
    )
    if evaluation is None or evaluation.decision.replicas == current:
        return Scaling(current)
    decision = evaluation.decision
    message = evaluation.describe(current)
    step = ScalingDecision(
        time=_now(),
        from_replicas=current,
        to_replicas=decision.replicas,
        reason=decision.reason,
        message=message,
        metric=evaluation.metric,
        value=round(evaluation.load.value, 3),
        target_per_replica=evaluation.target_per_replica,
    )
    log.info("Autoscaler: %s", message, extra=about(namespace, name))
    await ctx.api.emit_event(body, "Normal", decision.reason, message)
    if ctx.on_scaling is not None:
        ctx.on_scaling(namespace, name, decision.reason)
    return Scaling(decision.replicas, step)


def _autoscaling_status(
    current: LLMServiceStatus,
    scaling: Scaling,
    live_engine: Mapping[str, Any] | None,
) -> AutoscalingStatus:
    previous = current.autoscaling.last_decision if current.autoscaling else None
    running = int(((live_engine or {}).get("status") or {}).get("replicas", 0))
    return AutoscalingStatus(
        current_replicas=running,
        desired_replicas=scaling.replicas,
        last_decision=scaling.step or previous,
    )


async def _keep_scaling_step(
    ctx: Context, body: Mapping[str, Any], service: LLMService, step: ScalingDecision
) -> None:
    """Record a step the engine Deployment took when its reconcile fails before writing
    the status: only the autoscaling field (a merge patch leaves the rest as it is), and
    only if the Deployment was scaled. Best effort, as `_report_transient`."""
    meta = body["metadata"]
    live = ctx.store.get("Deployment", meta["namespace"], naming.engine_name(service))
    if live is None or (live.get("spec") or {}).get("replicas") != step.to_replicas:
        return  # not applied: the next reconcile decides again
    autoscaling = AutoscalingStatus(
        current_replicas=int((live.get("status") or {}).get("replicas", 0)),
        desired_replicas=step.to_replicas,
        last_decision=step,
    )
    try:
        # Whatever the copy: the step was taken (a merge patch of this one field).
        await _patch_status(ctx, body, LLMServiceStatus(autoscaling=autoscaling), onto_copy=False)
    except (client.ApiException, OSError) as error:
        log.warning(
            "Could not record the scaling step in the status: %s",
            error,
            extra=about(meta["namespace"], meta["name"]),
        )


async def reconcile(body: Mapping[str, Any], ctx: Context) -> Outcome:
    """Bring one LLMService's children and status in line with its spec."""
    outcome = Outcome()
    meta = body["metadata"]
    namespace, name, generation = meta["namespace"], meta["name"], meta.get("generation", 0)
    current = stored_status(body)
    conditions = list(current.conditions or [])
    ctx.throughput.restore(namespace, name, _rates_from_status(current))

    rendered = ctx.renders.get(body)
    if isinstance(rendered, InvalidLLMService):
        message = "; ".join(str(error) for error in rendered.errors)
        invalid_status = _evolve(
            current,
            observed_generation=generation,
            conditions=_merge(conditions, observe.invalid_spec_observations(message), generation),
        )
        await _write_status(ctx, body, current, invalid_status, outcome)
        return outcome

    service, desired = rendered
    installed = frozenset(
        crd
        for crd, present in (
            (SERVICE_MONITOR_CRD, ctx.monitoring_crd_installed),
            (PROMETHEUS_RULE_CRD, ctx.prometheus_rule_crd_installed),
        )
        if present
    )
    desired, monitoring = monitoring_children(service, desired, installed)

    pods = ctx.store.pods(namespace, name, naming.ENGINE)
    router_pods = ctx.store.pods(namespace, name, naming.ROUTER)
    engine_replicas = rendered_engine_replicas(service)
    scaling: Scaling | None = None
    if service.spec.engine.autoscaling.enabled:
        scaling = await _autoscale(ctx, body, service, engine_replicas, pods, router_pods)
        engine_replicas = scaling.replicas
        desired = _with_engine_replicas(desired, naming.engine_name(service), engine_replicas)
    elif ctx.autoscaler is not None:
        ctx.autoscaler.forget(namespace, name)

    try:
        applied = await _apply_children(ctx, body, service, desired, current, outcome)

        live_engine = ctx.store.get("Deployment", namespace, naming.engine_name(service))
        engine_state = observe.deployment_state(live_engine, engine_replicas)
        router_state = observe.deployment_state(
            ctx.store.get("Deployment", namespace, naming.router_name(service)),
            service.spec.router.replicas,
        )
        failed_mounts = await _failed_mounts(ctx, namespace, [*pods, *router_pods])
        engine = observe.engine_observation(engine_state, pods, failed_mounts)
        rejected_keys = await _rejected_keys(ctx, service, router_pods)
        router = observe.router_observation(router_state, router_pods, failed_mounts, rejected_keys)
        if applied.invalid:
            summary = observe.invalid_spec_observations("; ".join(applied.invalid)[:4000])
        else:
            summary = list(observe.summary(engine, router, applied.error))
        observations = [*summary, engine, router, monitoring]

        targets = _metrics_targets(pods, naming.ENGINE_PORT)
        rates = await ctx.throughput.observe(namespace, name, targets, ctx.now)

        status = LLMServiceStatus(
            observed_generation=generation,
            conditions=_merge(conditions, observations, generation),
            replicas=engine_state.desired,
            ready_replicas=engine_state.ready,
            replica_summary=f"{engine_state.ready}/{engine_state.desired}",
            selector=naming.selector_string(service, naming.ENGINE),
            router_ready_replicas=router_state.ready,
            endpoint=endpoint_url(service),
            throughput=_throughput_status(rates) if rates is not None else current.throughput,
            autoscaling=(
                _autoscaling_status(current, scaling, live_engine) if scaling is not None else None
            ),
        )
        await _write_status(ctx, body, current, status, outcome)
    except Exception:
        # The Deployment may have been scaled already: the next reconcile finds it at the
        # new size, makes no decision, and the status would never say why it moved.
        if scaling is not None and scaling.step is not None:
            await _keep_scaling_step(ctx, body, service, scaling.step)
        raise
    return outcome
