"""Condition types, reasons and `set_condition()`.

| type                 | True means                                          | abnormal when |
| -------------------- | --------------------------------------------------- | ------------- |
| Ready                | the endpoint serves requests                        | False         |
| Reconciling          | the operator is still converging the children       | True          |
| Stalled              | progress needs a spec or cluster change             | True          |
| EngineAvailable      | every engine replica is ready                       | False         |
| RouterAvailable      | at least one router replica is ready                | False         |
| MonitoringConfigured | ServiceMonitors and PrometheusRule exist (or are    | False         |
|                      | not wanted)                                         |               |

Ready, Reconciling and Stalled follow kstatus, so Flux reads health without custom code
(Argo CD through deploy/argocd/health.lua). `lastTransitionTime` moves only when `status`
changes; every condition is stamped with the generation it describes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from llmservice.api.status import Condition, ConditionStatus

READY = "Ready"
RECONCILING = "Reconciling"
STALLED = "Stalled"
ENGINE_AVAILABLE = "EngineAvailable"
ROUTER_AVAILABLE = "RouterAvailable"
MONITORING_CONFIGURED = "MonitoringConfigured"

# Order in which conditions are listed in the status.
TYPES = (READY, RECONCILING, STALLED, ENGINE_AVAILABLE, ROUTER_AVAILABLE, MONITORING_CONFIGURED)

TRUE: ConditionStatus = "True"
FALSE: ConditionStatus = "False"
UNKNOWN: ConditionStatus = "Unknown"

# Reasons (CamelCase, as the API conventions ask).
AVAILABLE = "Available"
PROGRESSING = "Progressing"
UNSCHEDULABLE = "Unschedulable"
SCALED_TO_ZERO = "ScaledToZero"
SECRET_NOT_FOUND = "SecretNotFound"  # noqa: S105 - a reason, not a secret
CONTAINER_FAILING = "ContainerFailing"
FAILED_CREATE = "FailedCreate"  # the Deployment cannot create its Pods
APPLY_FAILED = "ApplyFailed"
API_ERROR = "APIError"
INVALID_SPEC = "InvalidSpec"
CRD_NOT_INSTALLED = "CRDNotInstalled"
DISABLED = "Disabled"
CONFIGURED = "Configured"
RECONCILED = "Reconciled"
WAITING_FOR_ENGINE = "WaitingForEngine"
WAITING_FOR_ROUTER = "WaitingForRouter"


@dataclass(frozen=True)
class Observation:
    """One condition as observed now, before it is merged into the stored list."""

    type: str
    status: ConditionStatus
    reason: str
    message: str = ""


def set_condition(
    current: Sequence[Condition],
    observation: Observation,
    generation: int,
    now: datetime,
) -> list[Condition]:
    """`current` with `observation` merged in; `lastTransitionTime` kept unless status moved."""
    if observation.status not in (TRUE, FALSE, UNKNOWN):
        raise ValueError(f"condition status must be True, False or Unknown: {observation.status}")
    previous = find(current, observation.type)
    transition = now
    if previous is not None and previous.status == observation.status:
        transition = previous.last_transition_time or now
    merged = Condition(
        type=observation.type,
        status=observation.status,
        observed_generation=generation,
        last_transition_time=transition,
        reason=observation.reason,
        message=observation.message,
    )
    ordered = [*(c for c in current if c.type != observation.type), merged]
    rank = {name: index for index, name in enumerate(TYPES)}
    return sorted(ordered, key=lambda c: rank.get(c.type, len(TYPES)))


def find(conditions: Sequence[Condition], condition_type: str) -> Condition | None:
    return next((c for c in conditions if c.type == condition_type), None)
