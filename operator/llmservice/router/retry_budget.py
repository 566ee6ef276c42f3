"""The retry budget shared by all requests of one router.

`RetryBudget` caps retries to a fraction of recent traffic, so a failing fleet is not hit
with a multiple of its load. It takes its clock from the caller, so tests can drive it.

The rule (`RetryBudget.allow`): a retry onto a *healthy* replica, one that is not ejected
and whose recent attempts mostly succeeded (a weighted success rate of at least one half; a
new replica counts as healthy; see `llmservice.router.outliers`), is always allowed and
costs nothing; any other retry is charged to the budget and refused once it is spent.

Why: the retried failures (a refused or reset connection, a 502/503/504) cost the failing
replica next to nothing, so moving the request to a replica that is answering adds no work
to the fleet, it only puts the request where it can be served. One dead replica, or a
share of faults spread over the fleet, therefore never drains the budget while healthy
replicas exist. In a fleet-wide outage every replica's success rate falls below one half
within three failed attempts each; from then on every retry is charged, and the budget
keeps retries to ``budget_ratio`` of the requests (plus the small steady allowance), so the
outage is not amplified. A request's own retries are capped by ``attempts_max`` in any
case, and a replica gets a second try only when no replica it has not tried can take it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from llmservice.router.config import RetryPolicy

__all__ = ["RetryBudget"]


class RetryBudget:
    """Allows retries up to a ratio of recent requests, plus a small steady allowance.

    Counts live in one-second buckets over ``policy.budget_window`` seconds, so the state is
    a fixed few integers however high the request rate.
    """

    def __init__(self, policy: RetryPolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self._policy = policy
        self._clock = clock
        self._size = max(1, math.ceil(policy.budget_window))
        self._stamps = [-1] * self._size
        self._requests = [0] * self._size
        self._retries = [0] * self._size

    def _slot(self) -> tuple[int, int]:
        now = int(self._clock())
        slot = now % self._size
        if self._stamps[slot] != now:
            self._stamps[slot], self._requests[slot], self._retries[slot] = now, 0, 0
        return slot, now

    def record_request(self) -> None:
        slot, _ = self._slot()
        self._requests[slot] += 1

    def allow(self, *, healthy_target: bool) -> bool:
        """Whether a retry may go ahead; see the module docstring for the rule."""
        return healthy_target or self.try_spend()

    def try_spend(self) -> bool:
        """Take one retry from the budget; False when it is spent."""
        slot, now = self._slot()
        live = [i for i in range(self._size) if self._stamps[i] > now - self._size]
        requests = sum(self._requests[i] for i in live)
        retries = sum(self._retries[i] for i in live)
        allowed = max(
            self._policy.budget_min_per_second * self._size, self._policy.budget_ratio * requests
        )
        if retries >= allowed:
            return False
        self._retries[slot] += 1
        return True
