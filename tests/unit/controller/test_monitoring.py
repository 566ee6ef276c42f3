"""Monitoring children are left out when their CRD is missing, and the condition says which."""

from __future__ import annotations

from typing import Any

import pytest

from llmservice.api.validation import parse_llmservice
from llmservice.controller.kinds import PROMETHEUS_RULE_CRD, SERVICE_MONITOR_CRD
from llmservice.controller.monitoring import monitoring_children
from llmservice.render import render_all

BOTH = frozenset({SERVICE_MONITOR_CRD, PROMETHEUS_RULE_CRD})


def service(monitoring: dict[str, Any]) -> Any:
    return parse_llmservice(
        {
            "apiVersion": "serving.llmservice.dev/v1alpha1",
            "kind": "LLMService",
            "metadata": {"name": "chat", "namespace": "default"},
            "spec": {"model": {"name": "org/model"}, "monitoring": monitoring},
        }
    )


def kinds(objects: list[dict[str, Any]]) -> list[str]:
    return sorted(o["kind"] for o in objects if o["kind"] in {"ServiceMonitor", "PrometheusRule"})


@pytest.mark.parametrize(
    ("monitoring", "installed", "expected_kinds", "status", "reason", "words"),
    [
        ({}, BOTH, ["PrometheusRule", "ServiceMonitor", "ServiceMonitor"], "True", "Configured",
         ["ServiceMonitors and PrometheusRule applied"]),
        ({}, frozenset(), [], "False", "CRDNotInstalled",
         [SERVICE_MONITOR_CRD, PROMETHEUS_RULE_CRD, "are not installed"]),
        ({}, frozenset({SERVICE_MONITOR_CRD}), ["ServiceMonitor", "ServiceMonitor"], "False",
         "CRDNotInstalled", [PROMETHEUS_RULE_CRD, "is not installed", "ServiceMonitors applied"]),
        ({"prometheusRule": {"enabled": False}}, frozenset({SERVICE_MONITOR_CRD}),
         ["ServiceMonitor", "ServiceMonitor"], "True", "Configured", ["ServiceMonitors applied"]),
        ({"serviceMonitor": False}, frozenset({PROMETHEUS_RULE_CRD}), ["PrometheusRule"], "True",
         "Configured", ["PrometheusRule applied"]),
        ({"serviceMonitor": False, "prometheusRule": {"enabled": False}}, frozenset(), [],
         "True", "Disabled", ["false"]),
    ],
)  # fmt: skip
def test_monitoring_children(
    monitoring: dict[str, Any],
    installed: frozenset[str],
    expected_kinds: list[str],
    status: str,
    reason: str,
    words: list[str],
) -> None:
    llms = service(monitoring)
    desired, observation = monitoring_children(llms, render_all(llms), installed)
    assert kinds(desired) == expected_kinds
    assert (observation.type, observation.status, observation.reason) == (
        "MonitoringConfigured",
        status,
        reason,
    )
    for word in words:
        assert word in observation.message
    # Everything that is not a monitoring kind is always kept.
    others = [o for o in render_all(llms) if o["kind"] not in {"ServiceMonitor", "PrometheusRule"}]
    assert [o for o in desired if o["kind"] not in {"ServiceMonitor", "PrometheusRule"}] == others
