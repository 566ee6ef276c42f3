"""Pure parts of the operator: comparison, conditions, status summary, throughput rates."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from llmservice.controller import conditions as c
from llmservice.controller import observe
from llmservice.controller.compare import is_subset
from llmservice.controller.conditions import Observation, set_condition
from llmservice.controller.handlers import backoff
from llmservice.controller.mounts import FailedMountLookup
from llmservice.controller.throughput import Rates, Sample, parse_sample, rates_between


def test_subset_ignores_fields_set_by_others() -> None:
    desired = {"spec": {"replicas": 1, "template": {"containers": [{"name": "a"}]}}}
    live = {
        "spec": {
            "replicas": 1,
            "paused": False,
            "template": {"containers": [{"name": "a", "imagePullPolicy": "Always"}]},
        }
    }
    assert is_subset(desired, live)


@pytest.mark.parametrize(
    ("desired", "live"),
    [
        ({"replicas": 1}, {"replicas": 2}),
        ({"a": [1, 2]}, {"a": [1]}),
        ({"a": {"b": 1}}, {}),
        ({"x": "1"}, {"x": 1}),
    ],
)
def test_subset_detects_differences(desired: object, live: object) -> None:
    assert not is_subset(desired, live)


def test_quantities_compare_by_value() -> None:
    assert is_subset(
        {"limits": {"nvidia.com/gpu": 1, "memory": "17179869184"}},
        {"limits": {"nvidia.com/gpu": "1", "memory": "16Gi"}},
    )
    assert not is_subset({"memory": "16Gi"}, {"memory": "17Gi"})


T1, T2, T3 = (datetime(2026, 1, 1, 0, 0, second, tzinfo=UTC) for second in (1, 2, 3))


def test_transition_time_moves_only_when_status_changes() -> None:
    first = set_condition([], Observation(c.READY, c.FALSE, "Waiting"), 1, T1)
    same = set_condition(first, Observation(c.READY, c.FALSE, "StillWaiting", "m"), 2, T2)
    assert same[0].last_transition_time == T1
    assert same[0].observed_generation == 2
    flipped = set_condition(same, Observation(c.READY, c.TRUE, "Available"), 2, T3)
    assert flipped[0].last_transition_time == T3


def test_conditions_are_listed_in_table_order() -> None:
    merged = set_condition([], Observation(c.STALLED, c.FALSE, "Reconciled"), 1, T1)
    merged = set_condition(merged, Observation(c.READY, c.TRUE, "Available"), 1, T1)
    assert [condition.type for condition in merged] == [c.READY, c.STALLED]


def test_condition_status_must_be_true_false_or_unknown() -> None:
    with pytest.raises(ValueError, match="True, False or Unknown"):
        set_condition([], Observation(c.READY, "Yes", "Bad"), 1, T1)  # type: ignore[arg-type]


def test_unschedulable_pod_stalls_with_the_scheduler_message() -> None:
    pod = {
        "status": {
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/2 nodes are available: 2 Insufficient nvidia.com/gpu.",
                }
            ]
        }
    }
    state = observe.DeploymentState(
        desired=1, ready=0, available=0, updated=1, current_generation=True
    )
    engine = observe.engine_observation(state, [pod])
    assert (engine.status, engine.reason) == (c.FALSE, c.UNSCHEDULABLE)
    ready, reconciling, stalled = observe.summary(
        engine, Observation(c.ROUTER_AVAILABLE, c.TRUE, "Available"), None
    )
    assert (ready.status, reconciling.status, stalled.status) == (c.FALSE, c.FALSE, c.TRUE)
    assert "Insufficient nvidia.com/gpu" in stalled.message


def test_missing_secret_is_named() -> None:
    pod = {
        "status": {
            "containerStatuses": [
                {
                    "state": {
                        "waiting": {
                            "reason": "CreateContainerConfigError",
                            "message": 'secret "hf-token" not found',
                        }
                    }
                }
            ]
        }
    }
    state = observe.DeploymentState(1, 0, 0, 1, True)
    engine = observe.engine_observation(state, [pod])
    assert engine.reason == c.SECRET_NOT_FOUND
    assert "hf-token" in engine.message


def test_rollout_in_progress_is_reconciling() -> None:
    engine = observe.engine_observation(observe.DeploymentState(3, 1, 1, 3, True), [])
    ready, reconciling, stalled = observe.summary(
        engine, Observation(c.ROUTER_AVAILABLE, c.TRUE, "A"), None
    )
    assert (ready.status, reconciling.status, stalled.status) == (c.FALSE, c.TRUE, c.FALSE)
    assert "1/3" in reconciling.message


def test_zero_replicas_behind_a_ready_router_is_ready_and_says_why() -> None:
    engine = observe.engine_observation(observe.DeploymentState(0, 0, 0, 0, True), [])
    router = Observation(c.ROUTER_AVAILABLE, c.TRUE, c.AVAILABLE)
    ready, reconciling, stalled = observe.summary(engine, router, None)
    assert (ready.status, ready.reason) == (c.TRUE, c.SCALED_TO_ZERO)
    assert (reconciling.status, stalled.status) == (c.FALSE, c.FALSE)


def test_zero_replicas_without_a_ready_router_is_still_scaled_to_zero_not_reconciling() -> None:
    engine = observe.engine_observation(observe.DeploymentState(0, 0, 0, 0, True), [])
    router = Observation(c.ROUTER_AVAILABLE, c.FALSE, c.PROGRESSING, "0/2 replicas ready")
    ready, reconciling, stalled = observe.summary(engine, router, None)
    assert (ready.status, ready.reason) == (c.FALSE, c.SCALED_TO_ZERO)
    assert ready.message == "no engine replica runs; RouterAvailable: 0/2 replicas ready"
    assert (reconciling.status, stalled.status) == (c.FALSE, c.FALSE)


METRICS = """# TYPE vllm:request_success counter
vllm:request_success_total{finished_reason="stop",model_name="m"} 10
vllm:request_success_total{finished_reason="length",model_name="m"} 5
# TYPE vllm:prompt_tokens counter
vllm:prompt_tokens_total{model_name="m"} 1000
# TYPE vllm:generation_tokens counter
vllm:generation_tokens_total{model_name="m"} 2000
"""


def test_counters_are_summed_over_labels() -> None:
    sample = parse_sample(METRICS, at=5.0)
    assert (sample.requests, sample.prompt_tokens, sample.generation_tokens) == (15, 1000, 2000)


def test_rates_sum_pods_and_handle_counter_resets() -> None:
    before = {"a": Sample(0.0, 10, 100, 200), "b": Sample(0.0, 50, 500, 5000)}
    after = {"a": Sample(10.0, 20, 200, 400), "b": Sample(10.0, 5, 50, 100)}  # b restarted
    rates = rates_between(before, after)
    assert rates == Rates(1.5, 15.0, 30.0, 10.0)


def test_no_rate_without_two_scrapes_of_one_pod() -> None:
    assert rates_between({}, {"a": Sample(1.0)}) is None


def test_small_changes_are_not_worth_a_write() -> None:
    assert not Rates(1.0, 10.0, 100.0, 10).meaningfully_different(Rates(1.0, 10.0, 105.0, 10))
    assert Rates(1.0, 10.0, 100.0, 10).meaningfully_different(Rates(1.0, 10.0, 150.0, 10))
    assert Rates(0.0, 0.0, 0.0, 10).meaningfully_different(Rates(0.1, 1.0, 1.0, 10))


def test_router_waiting_on_a_missing_secret_volume_is_named_and_stalls() -> None:
    pod = {
        "metadata": {"name": "chat-router-abc"},
        "status": {"containerStatuses": [{"state": {"waiting": {"reason": "ContainerCreating"}}}]},
    }
    mounts = {
        "chat-router-abc": 'MountVolume.SetUp failed for volume "api-keys" : '
        'secret "chat-keys" not found'
    }
    assert observe.mounting_pods([pod]) == ["chat-router-abc"]
    state = observe.DeploymentState(1, 0, 0, 1, True)
    router = observe.router_observation(state, [pod], mounts)
    assert (router.type, router.status, router.reason) == (
        c.ROUTER_AVAILABLE,
        c.FALSE,
        c.SECRET_NOT_FOUND,
    )
    assert 'secret "chat-keys" not found' in router.message
    engine = Observation(c.ENGINE_AVAILABLE, c.TRUE, c.AVAILABLE, "1/1 replicas ready")
    ready, reconciling, stalled = observe.summary(engine, router, None)
    assert (ready.status, reconciling.status, stalled.status) == (c.FALSE, c.FALSE, c.TRUE)
    assert stalled.reason == c.SECRET_NOT_FOUND
    assert stalled.message.startswith("RouterAvailable: ")
    assert "chat-keys" in stalled.message


def test_creating_pod_without_a_failed_mount_is_just_progressing() -> None:
    pod = {
        "metadata": {"name": "chat-router-abc"},
        "status": {"containerStatuses": [{"state": {"waiting": {"reason": "ContainerCreating"}}}]},
    }
    state = observe.DeploymentState(1, 0, 0, 1, True)
    assert observe.router_observation(state, [pod], {}).reason == c.PROGRESSING
    other = {"other-pod": 'MountVolume.SetUp failed for volume "x" : secret "y" not found'}
    assert observe.router_observation(state, [pod], other).reason == c.PROGRESSING
    assert observe.mounting_pods([{"metadata": {"name": "p"}, "status": {}}]) == []


class CountingAPI:
    """Stands in for ClusterAPI.failed_mounts only, counting the calls."""

    def __init__(self) -> None:
        self.calls = 0

    async def failed_mounts(self, namespace: str) -> dict[str, str]:
        self.calls += 1
        return {"pod": f"call {self.calls} in {namespace}"}


def test_failed_mounts_are_listed_at_most_once_per_ttl_per_namespace() -> None:
    now = [0.0]
    lookup = FailedMountLookup(ttl=10, clock=lambda: now[0])
    api: Any = CountingAPI()

    async def scenario() -> None:
        assert await lookup.get(api, "a") == {"pod": "call 1 in a"}
        now[0] = 9.0
        assert await lookup.get(api, "a") == {"pod": "call 1 in a"}
        assert await lookup.get(api, "b") == {"pod": "call 2 in b"}
        now[0] = 10.0
        assert await lookup.get(api, "a") == {"pod": "call 3 in a"}

    asyncio.run(scenario())
    assert api.calls == 3


def test_pods_the_deployment_cannot_create_stall_with_its_message() -> None:
    message = 'pods "chat-engine-1" is forbidden: no PriorityClass with name gold was found'
    deployment = {
        "metadata": {"generation": 1},
        "status": {
            "observedGeneration": 1,
            "conditions": [
                {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
                 "message": message},
            ],
        },
    }  # fmt: skip
    state = observe.deployment_state(deployment, 1)
    engine = observe.engine_observation(state, [])
    assert (engine.status, engine.reason, engine.message) == (c.FALSE, c.FAILED_CREATE, message)
    ready, reconciling, stalled = observe.summary(
        engine, Observation(c.ROUTER_AVAILABLE, c.TRUE, c.AVAILABLE), None
    )
    assert (ready.status, reconciling.status, stalled.status) == (c.FALSE, c.FALSE, c.TRUE)
    assert stalled.message == f"EngineAvailable: {message}"


def test_backoff_doubles_up_to_a_minute() -> None:
    assert [backoff(retry) for retry in (0, 1, 2, 5, 6, 20)] == [1, 2, 4, 32, 60, 60]
