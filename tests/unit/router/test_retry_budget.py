"""The retry budget, on an injected clock."""

from __future__ import annotations

from llmservice.router import RetryPolicy
from llmservice.router.retry_budget import RetryBudget


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_budget_allows_a_ratio_of_recent_requests() -> None:
    clock = Clock()
    budget = RetryBudget(
        RetryPolicy(budget_ratio=0.1, budget_min_per_second=0.0, budget_window=10), clock
    )
    for _ in range(100):
        budget.record_request()
    spent = sum(budget.try_spend() for _ in range(50))
    assert spent == 10
    clock.now += 5  # still inside the window
    assert not budget.try_spend()
    clock.now += 6  # the old requests and retries left the window
    assert not budget.try_spend()  # no recent requests, no minimum
    for _ in range(20):
        budget.record_request()
    assert budget.try_spend()


def test_budget_minimum_allows_retries_at_low_traffic() -> None:
    clock = Clock()
    budget = RetryBudget(
        RetryPolicy(budget_ratio=0.0, budget_min_per_second=0.5, budget_window=4), clock
    )
    assert sum(budget.try_spend() for _ in range(10)) == 2  # 0.5/s over 4 s
    clock.now += 4
    assert budget.try_spend()


def test_retries_onto_healthy_replicas_are_free() -> None:
    clock = Clock()
    budget = RetryBudget(
        RetryPolicy(budget_ratio=0.0, budget_min_per_second=0.1, budget_window=10), clock
    )
    assert all(budget.allow(healthy_target=True) for _ in range(100))
    assert budget.allow(healthy_target=False)  # the one charged retry of the window
    assert not budget.allow(healthy_target=False)
    assert budget.allow(healthy_target=True)
