"""PodDisruptionBudgets for engine and router, and the NetworkPolicies of engine and router."""

from __future__ import annotations

from typing import Any

from llmservice.api import LLMService
from llmservice.render import naming
from llmservice.render.router import peers_enabled
from llmservice.render.templating import render_template

# Labels of the operator's own Pods (deploy/), allowed to scrape engine metrics.
OPERATOR_SELECTOR = {"app.kubernetes.io/name": "llmservice-operator"}


def _budget(service: LLMService, name: str, component: str) -> dict[str, Any]:
    return {
        "metadata": naming.object_meta(service, name, component),
        "selector": naming.selector_labels(service, component),
    }


def render(service: LLMService) -> list[dict[str, Any]]:
    budgets = [_budget(service, naming.router_name(service), naming.ROUTER)]
    engine = service.spec.engine
    most = engine.autoscaling.max_replicas if engine.autoscaling.enabled else engine.replicas
    if most > 1:
        # One replica cannot be protected without blocking drains forever. With the
        # autoscaler the budget exists whenever it may add replicas: maxUnavailable 1 never
        # blocks a drain, at one replica or at zero (it then selects no Pod).
        budgets.insert(0, _budget(service, naming.engine_name(service), naming.ENGINE))
    network_policy = router_policy = None
    if service.spec.network_policy.enabled and peers_enabled(service):
        # The router's clients reach it from anywhere, as before; its peer port only from
        # the other router Pods (they tell each other their session placements over it).
        router_policy = {
            "metadata": naming.object_meta(service, naming.router_name(service), naming.ROUTER),
            "router_selector": naming.selector_labels(service, naming.ROUTER),
        }
    if service.spec.network_policy.enabled:
        network_policy = {
            "metadata": naming.object_meta(service, naming.engine_name(service), naming.ENGINE),
            "engine_selector": naming.selector_labels(service, naming.ENGINE),
            "router_selector": naming.selector_labels(service, naming.ROUTER),
            "operator_selector": OPERATOR_SELECTOR,
            "monitoring_namespace_labels": dict(
                service.spec.network_policy.monitoring_namespace_labels
            ),
        }
    return render_template(
        "policies.yaml.j2",
        budgets=budgets,
        network_policy=network_policy,
        router_policy=router_policy,
    )
