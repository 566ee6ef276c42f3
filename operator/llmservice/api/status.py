"""The LLMService status: what the operator observed, in the shape kstatus reads.

Flux computes health from `observedGeneration` and the `Ready`, `Reconciling` and `Stalled`
conditions without custom code; Argo CD through the Lua script in deploy/argocd/. Component
conditions explain which part is not ready. Throughput is a rate over a stated window,
stamped with when it was observed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from llmservice.api.schema_types import CamelModel

ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(CamelModel):
    """One observation, as in metav1.Condition."""

    type: Annotated[str, Field(max_length=316, pattern=r"^[A-Za-z][A-Za-z0-9]*$")] = Field(
        description="Condition type, e.g. Ready, EngineAvailable."
    )
    status: ConditionStatus = Field(description="True, False or Unknown.")
    observed_generation: Annotated[int, Field(ge=0)] | None = Field(
        default=None, description="The generation of the spec this condition describes."
    )
    last_transition_time: datetime | None = Field(
        default=None, description="When `status` last changed."
    )
    reason: Annotated[
        str, Field(max_length=1024, pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
    ] = Field(description="CamelCase reason for the last transition.")
    message: Annotated[str, Field(max_length=32768)] = Field(
        default="", description="Human-readable details."
    )


class Throughput(CamelModel):
    """Served load measured from the engines' vLLM counters."""

    requests_per_second: float = Field(default=0.0, description="Finished requests per second.")
    prompt_tokens_per_second: float = Field(default=0.0, description="Prompt tokens per second.")
    generation_tokens_per_second: float = Field(
        default=0.0, description="Generated tokens per second."
    )
    window_seconds: float = Field(default=0.0, description="Length of the measurement window.")
    observed_at: datetime | None = Field(default=None, description="End of the window.")


class ScalingDecision(CamelModel):
    """One step the autoscaler took, with what it saw."""

    time: datetime = Field(description="When the step was taken.")
    from_replicas: Annotated[int, Field(ge=0)] = Field(
        alias="from", description="Engine replicas before the step."
    )
    to_replicas: Annotated[int, Field(ge=0)] = Field(
        alias="to", description="Engine replicas after the step."
    )
    reason: Annotated[str, Field(max_length=64, pattern=r"^[A-Za-z][A-Za-z0-9]*$")] = Field(
        description="ScaleUp, ScaleDown, ScaleToZero or WakeUp."
    )
    message: Annotated[str, Field(max_length=1024)] = Field(
        default="", description="The inputs of the decision, in words."
    )
    metric: Annotated[str, Field(max_length=64)] = Field(
        default="", description="The metric the decision followed."
    )
    value: float = Field(default=0.0, description="The metric's value, over all replicas.")
    target_per_replica: float = Field(default=0.0, description="The target per replica.")


class AutoscalingStatus(CamelModel):
    """What the operator's autoscaler decided (absent while it is disabled)."""

    current_replicas: Annotated[int, Field(ge=0)] = Field(
        description="Engine replicas the Deployment has now."
    )
    desired_replicas: Annotated[int, Field(ge=0)] = Field(
        description="Engine replicas the autoscaler wants."
    )
    last_decision: ScalingDecision | None = Field(
        default=None, description="The last scaling step."
    )


class LLMServiceStatus(CamelModel):
    """Observed state, written only by the operator."""

    observed_generation: Annotated[int, Field(ge=0)] | None = Field(
        default=None, description="The spec generation the status describes."
    )
    conditions: (
        Annotated[
            list[Condition],
            Field(
                max_length=16,
                json_schema_extra={
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["type"],
                },
            ),
        ]
        | None
    ) = Field(default=None, description="Ready, Reconciling, Stalled and component conditions.")
    replicas: Annotated[int, Field(ge=0)] | None = Field(
        default=None,
        description="Engine replicas desired: engine.replicas, or the autoscaler's count.",
    )
    selector: Annotated[str, Field(max_length=1024)] | None = Field(
        default=None,
        description="Label selector of the engine Pods, for the scale subresource.",
    )
    ready_replicas: Annotated[int, Field(ge=0)] | None = Field(
        default=None, description="Engine replicas ready to serve."
    )
    replica_summary: Annotated[str, Field(max_length=32)] | None = Field(
        default=None, description="`ready/desired` engine replicas, for `kubectl get`."
    )
    router_ready_replicas: Annotated[int, Field(ge=0)] | None = Field(
        default=None, description="Router replicas ready to serve."
    )
    endpoint: Annotated[str, Field(max_length=2048)] | None = Field(
        default=None, description="OpenAI-compatible base URL of the router."
    )
    throughput: Throughput | None = Field(default=None, description="Recent served load.")
    autoscaling: AutoscalingStatus | None = Field(
        default=None, description="The autoscaler's replicas and last step."
    )
