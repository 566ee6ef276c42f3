"""The built-in autoscaler: scrapes the load of one LLMService and decides its engine replicas.

Each evaluation that is due (at most every `scrape_interval` seconds per LLMService) asks
every ready router Pod for its `/metrics` over HTTP, the way throughput and the API keys
verdict are read, and with metric KVCacheUsage every ready engine Pod too; then
`scaling.decide` turns what they said into a replica count. Nothing is written here: the
reconcile puts the count in the engine Deployment it applies, so the LLMService's spec is
never touched and a GitOps tool sees no drift.

Demand is any request the routers answered since the last scrape, or have in flight or
queued now. With no router answering there is no signal and no decision: a router restart
must not look like an idle service. The history (recommendations, time of the last request)
lives in memory; after an operator restart the count starts from the live Deployment and
the idle clock from the first scrape.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import httpx

from llmservice.api.spec import AutoscalingSpec
from llmservice.controller.load import RouterLoad, kv_cache_usage, new_requests, router_load
from llmservice.controller.scaling import Decision, Load, Policy, Recommendations, decide

__all__ = ["Autoscaler", "Evaluation", "policy_of"]

SCRAPE_TIMEOUT_SECONDS = 2.0

log = logging.getLogger(__name__)

Targets = Sequence[tuple[str, str]]  # (pod name, metrics URL)


def policy_of(spec: AutoscalingSpec) -> Policy:
    return Policy(
        min_replicas=spec.min_replicas,
        max_replicas=spec.max_replicas,
        target_per_replica=spec.target_per_replica,
        scale_up_window=float(spec.scale_up_stabilization_seconds),
        scale_down_window=float(spec.scale_down_stabilization_seconds),
        idle_to_zero=float(spec.scale_to_zero_after_idle_seconds),
        per_replica_average=spec.metric == "KVCacheUsage",
    )


@dataclass(frozen=True)
class Evaluation:
    """One decision and the inputs it was made from."""

    decision: Decision
    load: Load
    metric: str
    target_per_replica: float

    def describe(self, current: int) -> str:
        """The decision in words, for the Event and the status."""
        if self.decision.message:
            return f"{current} -> {self.decision.replicas} replicas: {self.decision.message}"
        unit = "mean" if self.metric == "KVCacheUsage" else "total"
        return (
            f"{current} -> {self.decision.replicas} replicas: {self.metric} {unit}"
            f" {self.load.value:g}, target {self.target_per_replica:g} per replica"
        )


@dataclass
class _Service:
    last_scrape: float = float("-inf")
    routers: dict[str, RouterLoad] = field(default_factory=dict)
    last_demand: float | None = None
    history: Recommendations = field(default_factory=Recommendations)


class Autoscaler:
    """Per-LLMService scrape history and recommendations."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        scrape_interval: float = 2.0,
        on_scrape: Callable[[str, str, int, int], None] | None = None,
    ) -> None:
        """`on_scrape(namespace, name, attempted, failed)` hears of every round of scrapes."""
        self._http = http
        self._scrape_interval = scrape_interval
        self._on_scrape = on_scrape
        self._services: dict[tuple[str, str], _Service] = {}

    def forget(self, namespace: str, name: str) -> None:
        self._services.pop((namespace, name), None)

    async def _get(self, url: str) -> str | None:
        try:
            response = await self._http.get(url, timeout=SCRAPE_TIMEOUT_SECONDS)
            response.raise_for_status()
        except httpx.HTTPError:
            return None
        return response.text

    async def _scrape(self, targets: Targets) -> dict[str, str]:
        texts = await asyncio.gather(*(self._get(url) for _, url in targets))
        return {pod: text for (pod, _), text in zip(targets, texts, strict=True) if text}

    async def evaluate(
        self,
        namespace: str,
        name: str,
        spec: AutoscalingSpec,
        current: int,
        routers: Targets,
        engines: Targets,
        now: float,
    ) -> Evaluation | None:
        """The replicas to run, or None when no scrape is due or no router answered."""
        state = self._services.setdefault((namespace, name), _Service())
        if now - state.last_scrape < self._scrape_interval:
            return None
        state.last_scrape = now
        texts = await self._scrape(routers)
        kv_texts = await self._scrape(engines) if spec.metric == "KVCacheUsage" else {}
        if self._on_scrape is not None and routers:
            self._on_scrape(namespace, name, len(routers), len(routers) - len(texts))
        loads: dict[str, RouterLoad] = {}
        for pod, text in texts.items():
            try:
                loads[pod] = router_load(text)
            except ValueError:  # not Prometheus text: no answer
                continue
        if not loads:
            return None
        arrived = new_requests(state.routers, loads)
        state.routers = loads
        in_flight = sum(load.in_flight for load in loads.values())
        queued = sum(load.queued for load in loads.values())
        demand = arrived > 0 or in_flight > 0 or queued > 0
        if demand or state.last_demand is None:
            state.last_demand = now
        value = in_flight + queued
        if spec.metric == "KVCacheUsage":
            usages = [u for u in (kv_cache_usage(t) for t in kv_texts.values()) if u is not None]
            if not usages and current > 0:
                return None  # the engines said nothing: no basis to move
            value = sum(usages) / len(usages) if usages else 0.0
        load = Load(value=value, demand=demand, idle_seconds=now - state.last_demand)
        decision = decide(current, load, policy_of(spec), state.history, now)
        return Evaluation(decision, load, spec.metric, spec.target_per_replica)
