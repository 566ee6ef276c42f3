"""The autoscaler's decision rule: HorizontalPodAutoscaler arithmetic, windows, zero."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from llmservice.controller.scaling import (
    Decision,
    Load,
    Policy,
    Recommendations,
    decide,
    recommend,
)

POLICY = Policy(min_replicas=1, max_replicas=10, target_per_replica=8.0, scale_down_window=300)


def busy(value: float) -> Load:
    return Load(value=value, demand=True, idle_seconds=0.0)


IDLE = Load(value=0.0, demand=False, idle_seconds=0.0)


def test_recommendation_is_ceil_of_current_times_ratio() -> None:
    assert recommend(2, busy(40), POLICY) == 5  # 20 per replica, target 8: ceil(2 x 2.5)
    assert recommend(4, busy(8), POLICY) == 1


def test_within_tolerance_nothing_moves() -> None:
    assert recommend(4, busy(4 * 8 * 1.09), POLICY) == 4
    assert recommend(4, busy(4 * 8 * 0.91), POLICY) == 4
    assert recommend(4, busy(4 * 8 * 1.2), POLICY) == 5


def test_mean_metric_is_not_divided_by_replicas() -> None:
    kv = Policy(1, 10, 0.5, per_replica_average=True)
    assert recommend(3, busy(0.9), kv) == 6  # ceil(3 x 0.9 / 0.5)


def test_scale_up_is_immediate_with_no_up_window() -> None:
    decision = decide(1, busy(30), POLICY, Recommendations(), now=0.0)
    assert decision == Decision(4, "ScaleUp", "")


def test_scale_down_waits_for_the_whole_down_window() -> None:
    history = Recommendations()
    assert decide(4, busy(32), POLICY, history, now=0.0).replicas == 4
    for t in range(10, 300, 10):
        assert decide(4, busy(0), POLICY, history, now=float(t)).replicas == 4, t
    # The busy recommendation (4) left the window: now the highest is 1.
    assert decide(4, busy(0), POLICY, history, now=301.0) == Decision(1, "ScaleDown", "")


def test_scale_up_window_takes_the_lowest_recommendation() -> None:
    policy = Policy(1, 10, 8.0, scale_up_window=60, scale_down_window=0)
    history = Recommendations()
    assert decide(1, busy(8), policy, history, now=0.0).replicas == 1
    assert decide(1, busy(80), policy, history, now=30.0).replicas == 1
    assert decide(1, busy(80), policy, history, now=61.0).replicas == 10


def test_count_stays_within_min_and_max() -> None:
    policy = Policy(2, 3, 8.0, scale_down_window=0)
    assert decide(2, busy(800), policy, Recommendations(), 0.0).replicas == 3
    assert decide(3, busy(0), policy, Recommendations(), 0.0).replicas == 3  # held
    assert decide(3, busy(0), policy, Recommendations(), 1.0).replicas == 3
    history = Recommendations()
    decide(3, busy(0), policy, history, 0.0)
    assert decide(3, busy(0), policy, history, 1.0).replicas == 2
    assert decide(9, busy(80), policy, Recommendations(), 0.0).replicas == 3


def test_idle_service_goes_to_zero_only_with_min_zero_and_after_the_idle_time() -> None:
    to_zero = Policy(0, 4, 8.0, scale_down_window=0, idle_to_zero=600)
    idle = Load(0.0, demand=False, idle_seconds=599)
    assert decide(1, idle, to_zero, Recommendations(), 0.0).replicas == 1
    idle = Load(0.0, demand=False, idle_seconds=600)
    assert decide(1, idle, to_zero, Recommendations(), 0.0).reason == "ScaleToZero"
    assert decide(2, idle, POLICY, Recommendations(), 0.0).replicas == 2  # min 1, down window
    no_window = Policy(1, 4, 8.0, scale_down_window=0)
    assert decide(2, idle, no_window, Recommendations(), 0).replicas == 2  # held at 0 s
    assert decide(2, idle, no_window, Recommendations(), 0.5).replicas == 2
    history = Recommendations()
    decide(2, idle, no_window, history, 0)
    assert decide(2, idle, no_window, history, 0.5).replicas == 1


def test_zero_stays_zero_without_demand_and_wakes_at_once_with_it() -> None:
    to_zero = Policy(0, 4, 8.0, scale_up_window=600, idle_to_zero=60)
    assert decide(0, Load(0, False, 1000), to_zero, Recommendations(), 0.0) == Decision(0)
    woken = decide(0, Load(0, True, 0), to_zero, Recommendations(), 0.0)
    assert (woken.replicas, woken.reason) == (1, "WakeUp")
    # Twenty requests queued at zero ask for ceil(20 / 8) replicas straight away.
    assert decide(0, Load(20, True, 0), to_zero, Recommendations(), 0.0).replicas == 3


def test_zero_below_a_positive_minimum_comes_back_up() -> None:
    assert decide(0, IDLE, POLICY, Recommendations(), 0.0).replicas == 1


policies = st.builds(
    lambda low, span, target, up, down: Policy(low, low + span, target, up, down),
    st.integers(0, 8),
    st.integers(1, 8),
    st.floats(0.5, 50),
    st.sampled_from([0.0, 15.0, 60.0]),
    st.sampled_from([0.0, 60.0, 300.0]),
)
loads = st.lists(st.floats(0, 400), min_size=1, max_size=40)


@settings(max_examples=300, deadline=None)
@given(policy=policies, values=loads, start=st.integers(1, 16))
def test_counts_stay_within_bounds(policy: Policy, values: list[float], start: int) -> None:
    history, current = Recommendations(), start
    for step, value in enumerate(values):
        current = decide(current, busy(value), policy, history, now=step * 10.0).replicas
        assert max(policy.min_replicas, 1) <= current <= policy.max_replicas


@settings(max_examples=300, deadline=None)
@given(policy=policies, values=loads, start=st.integers(1, 16))
def test_no_scale_down_within_the_down_window_of_a_scale_up(
    policy: Policy, values: list[float], start: int
) -> None:
    """No flapping: after going up, the count does not come down before the window passes."""
    history, current = Recommendations(), start
    last_up = -math.inf
    for step, value in enumerate(values):
        now = step * 10.0
        decision = decide(current, busy(value), policy, history, now)
        if decision.replicas > current:
            last_up = now
        if decision.replicas < current and current <= policy.max_replicas:
            assert now - last_up > policy.scale_down_window
        current = decision.replicas


@settings(max_examples=200, deadline=None)
@given(policy=policies, value=st.floats(0, 400), start=st.integers(1, 16))
def test_a_steady_load_converges_and_then_stays(policy: Policy, value: float, start: int) -> None:
    history, current = Recommendations(), start
    window = policy.scale_down_window + policy.scale_up_window
    seen = []
    for step in range(int(window / 10) + 20):
        current = decide(current, busy(value), policy, history, now=step * 10.0).replicas
        seen.append(current)
    assert len(set(seen[-5:])) == 1
