"""Status from what the cluster shows: pure functions, no I/O.

Readiness comes from the children themselves: the engine Deployment's availability at its
current generation, the router's ready replicas, and, when replicas are missing, the reason
the Deployment gives for Pods it cannot create (a missing PriorityClass, a quota) or the
reason their Pods give (the scheduler's message, a missing Secret in the env or in a
volume, a crashing container).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from llmservice.controller import conditions as c
from llmservice.controller.conditions import Observation

# Container waiting reasons that mean "the Pod cannot start as specified".
CONFIG_ERRORS = {"CreateContainerConfigError", "CreateContainerError"}
FAILING = {"CrashLoopBackOff", "ErrImagePull", "ImagePullBackOff", "InvalidImageName"}
# How a kubelet shows a Pod whose volumes are not mounted yet; why is only in Events.
MOUNTING = "ContainerCreating"


@dataclass(frozen=True)
class DeploymentState:
    desired: int
    ready: int
    available: int
    updated: int
    current_generation: bool
    # The Deployment's ReplicaFailure message: its Pods cannot even be created.
    replica_failure: str = ""

    @property
    def rolled_out(self) -> bool:
        return (
            self.current_generation
            and self.updated >= self.desired
            and self.available >= self.desired
            and self.ready >= self.desired
        )


def deployment_state(deployment: Mapping[str, Any] | None, desired: int) -> DeploymentState:
    if deployment is None:
        return DeploymentState(desired, 0, 0, 0, False)
    status = deployment.get("status") or {}
    generation = deployment["metadata"].get("generation", 0)
    failure = next(
        (
            str(entry.get("message") or entry.get("reason") or "")
            for entry in status.get("conditions") or []
            if entry.get("type") == "ReplicaFailure" and entry.get("status") == "True"
        ),
        "",
    )
    return DeploymentState(
        desired=desired,
        ready=int(status.get("readyReplicas", 0)),
        available=int(status.get("availableReplicas", 0)),
        updated=int(status.get("updatedReplicas", 0)),
        current_generation=int(status.get("observedGeneration", 0)) >= generation,
        replica_failure=failure,
    )


def waiting_reason(pod: Mapping[str, Any]) -> str | None:
    """The waiting reason of the Pod's first waiting container, if any."""
    for container in (pod.get("status") or {}).get("containerStatuses") or []:
        waiting = (container.get("state") or {}).get("waiting")
        if waiting:
            return str(waiting.get("reason") or "")
    return None


def mounting_pods(pods: Sequence[Mapping[str, Any]]) -> list[str]:
    """Names of the Pods still waiting for their volumes."""
    return [p["metadata"]["name"] for p in pods if waiting_reason(p) == MOUNTING]


def pod_problem(
    condition: str,
    pods: Sequence[Mapping[str, Any]],
    failed_mounts: Mapping[str, str] | None = None,
) -> Observation | None:
    """The first reason a Pod gives for not running, as an observation of `condition`.

    `failed_mounts` maps Pod names to the kubelet's FailedMount message, for the Pods that
    still wait in ContainerCreating.
    """
    failed_mounts = failed_mounts or {}
    for pod in pods:
        status = pod.get("status") or {}
        for entry in status.get("conditions") or []:
            if (
                entry.get("type") == "PodScheduled"
                and entry.get("status") == "False"
                and entry.get("reason") == "Unschedulable"
            ):
                return Observation(condition, c.FALSE, c.UNSCHEDULABLE, entry.get("message", ""))
        for container in status.get("containerStatuses") or []:
            waiting = (container.get("state") or {}).get("waiting") or {}
            reason, message = waiting.get("reason"), waiting.get("message", "")
            if reason in CONFIG_ERRORS and "secret" in message.lower():
                return Observation(condition, c.FALSE, c.SECRET_NOT_FOUND, message)
            if reason in CONFIG_ERRORS or reason in FAILING:
                return Observation(condition, c.FALSE, c.CONTAINER_FAILING, f"{reason}: {message}")
            if reason == MOUNTING:
                mount_error = failed_mounts.get((pod.get("metadata") or {}).get("name", ""), "")
                if "secret" in mount_error.lower():
                    return Observation(condition, c.FALSE, c.SECRET_NOT_FOUND, mount_error)
    return None


def engine_observation(
    state: DeploymentState,
    pods: Sequence[Mapping[str, Any]],
    failed_mounts: Mapping[str, str] | None = None,
) -> Observation:
    if state.desired == 0:
        return Observation(c.ENGINE_AVAILABLE, c.FALSE, c.SCALED_TO_ZERO, "0 replicas desired")
    if state.rolled_out:
        return Observation(
            c.ENGINE_AVAILABLE, c.TRUE, c.AVAILABLE, f"{state.ready}/{state.desired} replicas ready"
        )
    if state.replica_failure:
        return Observation(c.ENGINE_AVAILABLE, c.FALSE, c.FAILED_CREATE, state.replica_failure)
    problem = pod_problem(c.ENGINE_AVAILABLE, pods, failed_mounts)
    if problem is not None:
        return problem
    return Observation(
        c.ENGINE_AVAILABLE,
        c.FALSE,
        c.PROGRESSING,
        f"{state.ready}/{state.desired} replicas ready",
    )


def rejected_keys_note(rejecting: int) -> str:
    """What `RouterAvailable` adds when router replicas rejected a new API keys file."""
    if rejecting <= 0:
        return ""
    if rejecting == 1:
        return (
            "; 1 router replica rejected the new API keys file and keeps the last good keys:"
            " see its log"
        )
    return (
        f"; {rejecting} router replicas rejected the new API keys file and keep the last good"
        " keys: see their logs"
    )


def router_observation(
    state: DeploymentState,
    pods: Sequence[Mapping[str, Any]] = (),
    failed_mounts: Mapping[str, str] | None = None,
    rejected_keys: int = 0,
) -> Observation:
    """`RouterAvailable`; `rejected_keys` router Pods report a rejected API keys file.

    Those replicas still serve (with the last good keys), so the condition stays True and
    only its message tells, where `kubectl describe` shows it.
    """
    if state.ready >= 1 and state.current_generation:
        return Observation(
            c.ROUTER_AVAILABLE,
            c.TRUE,
            c.AVAILABLE,
            f"{state.ready}/{state.desired} replicas ready{rejected_keys_note(rejected_keys)}",
        )
    if state.replica_failure:
        return Observation(c.ROUTER_AVAILABLE, c.FALSE, c.FAILED_CREATE, state.replica_failure)
    problem = pod_problem(c.ROUTER_AVAILABLE, pods, failed_mounts)
    if problem is not None:
        return problem
    return Observation(
        c.ROUTER_AVAILABLE, c.FALSE, c.PROGRESSING, f"{state.ready}/{state.desired} replicas ready"
    )


# Reasons that no amount of waiting fixes: they make the LLMService Stalled.
STALLING_REASONS = {
    c.UNSCHEDULABLE,
    c.SECRET_NOT_FOUND,
    c.INVALID_SPEC,
    c.CONTAINER_FAILING,
    c.FAILED_CREATE,
}


def summary(
    engine: Observation, router: Observation, apply_error: str | None
) -> tuple[Observation, Observation, Observation]:
    """Ready, Reconciling and Stalled from the component observations (kstatus semantics)."""
    if apply_error is not None:
        return (
            Observation(c.READY, c.FALSE, c.APPLY_FAILED, apply_error),
            Observation(c.RECONCILING, c.TRUE, c.APPLY_FAILED, apply_error),
            Observation(c.STALLED, c.FALSE, c.APPLY_FAILED, ""),
        )
    for blocked in (engine, router):
        if blocked.reason in STALLING_REASONS:
            message = f"{blocked.type}: {blocked.message}"
            return (
                Observation(c.READY, c.FALSE, blocked.reason, message),
                Observation(c.RECONCILING, c.FALSE, blocked.reason, ""),
                Observation(c.STALLED, c.TRUE, blocked.reason, message),
            )
    if engine.status == c.TRUE and router.status == c.TRUE:
        return (
            Observation(c.READY, c.TRUE, c.AVAILABLE, "the endpoint serves requests"),
            Observation(c.RECONCILING, c.FALSE, c.RECONCILED, ""),
            Observation(c.STALLED, c.FALSE, c.RECONCILED, ""),
        )
    if engine.reason == c.SCALED_TO_ZERO:
        # What the spec (or the autoscaler, for an idle service) asks for, never a fault.
        # With a ready router the endpoint takes requests (and wakes the engine): Ready.
        # A router that reports not ready while no engine replica exists stays
        # ScaledToZero too, not Reconciling, which would hold GitOps health checks for ever.
        if router.status == c.TRUE:
            ready = Observation(
                c.READY, c.TRUE, c.SCALED_TO_ZERO, "no engine replica runs; the router is up"
            )
        else:
            message = f"no engine replica runs; {router.type}: {router.message}"
            ready = Observation(c.READY, c.FALSE, c.SCALED_TO_ZERO, message)
        return (
            ready,
            Observation(c.RECONCILING, c.FALSE, c.SCALED_TO_ZERO, ""),
            Observation(c.STALLED, c.FALSE, c.SCALED_TO_ZERO, ""),
        )
    waiting = engine if engine.status != c.TRUE else router
    reason = c.WAITING_FOR_ENGINE if waiting is engine else c.WAITING_FOR_ROUTER
    message = f"{waiting.type}: {waiting.message}"
    return (
        Observation(c.READY, c.FALSE, reason, message),
        Observation(c.RECONCILING, c.TRUE, reason, message),
        Observation(c.STALLED, c.FALSE, reason, ""),
    )


def invalid_spec_observations(message: str) -> list[Observation]:
    return [
        Observation(c.READY, c.FALSE, c.INVALID_SPEC, message),
        Observation(c.RECONCILING, c.FALSE, c.INVALID_SPEC, ""),
        Observation(c.STALLED, c.TRUE, c.INVALID_SPEC, message),
    ]
