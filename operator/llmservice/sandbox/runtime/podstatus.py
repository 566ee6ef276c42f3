"""The Pod status a kubelet would write, for the Pods the runtime runs: pure functions.

The runtime reduces what it knows of a Pod's process to a `ContainerView` (the kubelet's
container state machine, coarsely): ContainerCreating, CreateContainerConfigError,
running (ready or not) and CrashLoopBackOff. `status_patch` turns a view into the
strategic-merge patch of the Pod's status, so conditions are merged by type and the
scheduler's `PodScheduled` is left alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

CONTAINER_CREATING = "ContainerCreating"
CONFIG_ERROR = "CreateContainerConfigError"
CRASH_LOOP = "CrashLoopBackOff"
NOT_READY = "ContainersNotReady"


@dataclass(frozen=True)
class ContainerView:
    """One container's state as `kubectl describe pod` would show it."""

    phase: str
    waiting: str | None = None
    message: str = ""
    started_at: str | None = None
    ready: bool = False
    restarts: int = 0


def creating(message: str = "") -> ContainerView:
    """Volumes not mounted yet, for instance because their Secret is missing."""
    return ContainerView("Pending", CONTAINER_CREATING, message)


def config_error(message: str, restarts: int = 0) -> ContainerView:
    """The env or a volume refers to what does not exist; the kubelet retries."""
    return ContainerView("Pending", CONFIG_ERROR, message, restarts=restarts)


def running(started_at: str, ready: bool, restarts: int) -> ContainerView:
    return ContainerView("Running", started_at=started_at, ready=ready, restarts=restarts)


def crash_loop(message: str, restarts: int) -> ContainerView:
    return ContainerView("Running", CRASH_LOOP, message, restarts=restarts)


def _container_status(container: Mapping[str, Any], view: ContainerView) -> dict[str, Any]:
    if view.waiting is None:
        state: dict[str, Any] = {"running": {"startedAt": view.started_at}}
    else:
        state = {"waiting": {"reason": view.waiting, "message": view.message}}
        if not view.message:
            del state["waiting"]["message"]
    return {
        "name": container["name"],
        "image": container.get("image", ""),
        "imageID": "",
        "ready": view.ready,
        "started": view.waiting is None,
        "restartCount": view.restarts,
        "state": state,
    }


def _condition(
    kind: str, ok: bool, current: Mapping[str, Mapping[str, Any]], now: str
) -> dict[str, Any]:
    status = "True" if ok else "False"
    previous = current.get(kind) or {}
    # lastTransitionTime moves only when the status does, as the kubelet's does.
    since = previous.get("lastTransitionTime") if previous.get("status") == status else None
    condition: dict[str, Any] = {
        "type": kind,
        "status": status,
        "lastTransitionTime": since or now,
        "reason": None if ok else NOT_READY,
    }
    return condition


def status_patch(pod: Mapping[str, Any], view: ContainerView, now: str) -> dict[str, Any]:
    """The status patch for `pod` (a Pod as a dict) showing `view` on every container.

    The runtime starts one process per Pod, so every container of the Pod shares its fate.
    """
    containers = (pod.get("spec") or {}).get("containers") or []
    current = {c["type"]: c for c in (pod.get("status") or {}).get("conditions") or []}
    return {
        "status": {
            "phase": view.phase,
            "conditions": [
                _condition("ContainersReady", view.ready, current, now),
                _condition("Ready", view.ready, current, now),
            ],
            "containerStatuses": [_container_status(c, view) for c in containers],
        }
    }
