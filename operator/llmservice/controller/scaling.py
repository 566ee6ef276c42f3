"""The autoscaler's decision: pure functions and one history per LLMService, no I/O, no clock.

The rule is the HorizontalPodAutoscaler's:
- recommendation = ceil(current x value per replica / target), or `current` while the
  ratio is within `TOLERANCE` of 1 (so small wobbles never move anything);
- stabilization: every recommendation is remembered with its time; the count may rise only
  to the lowest recommendation of the scale-up window and fall only to the highest of the
  scale-down window, so a load that dips for less than the down window never scales down
  and the count cannot flap;
- the result is kept within [max(minReplicas, 1), maxReplicas];
- with no history yet (a new LLMService, an operator restart) the running count counts as
  a recommendation made now.
Zero is a separate rule: with minReplicas 0, an LLMService the routers have seen no request
for during `scaleToZeroAfterIdleSeconds` goes to zero, and any sign of demand at zero
(a request arriving, in flight or queued) wakes it to as many replicas as the load asks for
(at least one) at once, without waiting for a window: someone is waiting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = [
    "TOLERANCE",
    "Decision",
    "Load",
    "Policy",
    "Recommendations",
    "decide",
    "recommend",
]

TOLERANCE = 0.1

SCALE_UP = "ScaleUp"
SCALE_DOWN = "ScaleDown"
SCALE_TO_ZERO = "ScaleToZero"
WAKE_UP = "WakeUp"


@dataclass(frozen=True)
class Policy:
    min_replicas: int
    max_replicas: int
    target_per_replica: float
    scale_up_window: float = 0.0
    scale_down_window: float = 300.0
    idle_to_zero: float = 600.0
    per_replica_average: bool = False  # the value is already a mean over replicas


@dataclass(frozen=True)
class Load:
    """What the last scrape showed.

    `value` is the metric: the sum over replicas (requests) or, with `per_replica_average`,
    the mean (KV-cache usage). `demand` says whether any request arrived, was in flight or
    waited since the previous scrape; `idle_seconds` how long none has.
    """

    value: float
    demand: bool
    idle_seconds: float


@dataclass(frozen=True)
class Decision:
    replicas: int
    reason: str = ""  # empty: no change
    message: str = ""


def recommend(current: int, load: Load, policy: Policy) -> int:
    """The HorizontalPodAutoscaler's recommendation for `current` replicas (1 or more)."""
    replicas = max(current, 1)
    per_replica = load.value if policy.per_replica_average else load.value / replicas
    ratio = per_replica / policy.target_per_replica
    if abs(ratio - 1.0) <= TOLERANCE:
        return replicas
    return max(1, math.ceil(replicas * ratio - 1e-9))


@dataclass
class Recommendations:
    """Recent recommendations with their times, for the stabilization windows."""

    entries: list[tuple[float, int]] = field(default_factory=list)
    # The count found running when the history began: holds scale-down only.
    held: tuple[float, int] | None = None

    def clear(self) -> None:
        self.entries.clear()
        self.held = None

    def add(self, now: float, replicas: int, keep: float) -> None:
        self.entries = [(at, r) for at, r in self.entries if now - at < keep]
        self.entries.append((now, replicas))

    def stabilized(self, current: int, now: float, policy: Policy) -> int:
        """`current` moved towards the newest recommendation as far as both windows allow."""
        newest = self.entries[-1][1]
        up, down = newest, newest
        for at, replicas in self.entries:
            if now - at <= policy.scale_up_window:
                up = min(up, replicas)
            if now - at <= policy.scale_down_window:
                down = max(down, replicas)
        if self.held is not None and now - self.held[0] <= policy.scale_down_window:
            down = max(down, self.held[1])
        return min(max(current, up), down)


def _clamp(replicas: int, policy: Policy) -> int:
    return min(max(replicas, policy.min_replicas, 1), policy.max_replicas)


def decide(
    current: int, load: Load, policy: Policy, history: Recommendations, now: float
) -> Decision:
    """The replicas to run now, and why when it differs from `current`."""
    if current == 0:
        if not load.demand and policy.min_replicas == 0:
            return Decision(0)
        history.clear()  # the windows start again from the wake-up
        wanted = _clamp(recommend(1, load, policy), policy)
        history.add(now, wanted, keep=0)
        why = "requests arrived while scaled to zero" if load.demand else "below minReplicas"
        return Decision(wanted, WAKE_UP if load.demand else SCALE_UP, why)
    if policy.min_replicas == 0 and not load.demand and load.idle_seconds >= policy.idle_to_zero:
        history.clear()
        return Decision(0, SCALE_TO_ZERO, f"no request for {load.idle_seconds:.0f}s")
    if not history.entries and history.held is None:
        # No history (a new LLMService, an operator restart): the running count counts as
        # recommended now for scaling down, so that waits a whole down window.
        history.held = (now, current)
    history.add(now, recommend(current, load, policy), keep=_window(policy))
    wanted = _clamp(history.stabilized(current, now, policy), policy)
    if wanted == current:
        return Decision(current)
    return Decision(wanted, SCALE_UP if wanted > current else SCALE_DOWN, "")


def _window(policy: Policy) -> float:
    return max(policy.scale_up_window, policy.scale_down_window) + 1.0
