"""The PrometheusRule: one per LLMService, scoped to it, thresholds from the spec."""

from __future__ import annotations

import re
from typing import Any

from llmservice.api.validation import parse_llmservice
from llmservice.render import alerts, render_all

# What the issue list asks every LLMService to be alerted on, by alert name.
EXPECTED_ALERTS = {
    "LLMServiceTimeToFirstTokenHigh",
    "LLMServiceEngineQueueHigh",
    "LLMServiceRouterQueueHigh",
    "LLMServiceKVCacheSaturated",
    "LLMServicePreemptions",
    "LLMServiceRouterServerErrors",
    "LLMServiceRouterRejections",
    "LLMServiceEngineReplicasUnavailable",
    "LLMServiceStalled",
    "LLMServiceNotReady",
    "LLMServiceReplicaNotRoutable",
    "LLMServiceGPUMemoryNearFull",
}


def document(monitoring: dict[str, Any] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"model": {"name": "Qwen/Qwen2.5-0.5B-Instruct"}}
    if monitoring is not None:
        spec["monitoring"] = monitoring
    return {
        "apiVersion": "serving.llmservice.dev/v1alpha1",
        "kind": "LLMService",
        "metadata": {"name": "chat", "namespace": "team-a"},
        "spec": spec,
    }


def rule(monitoring: dict[str, Any] | None = None) -> dict[str, Any] | None:
    found = [
        o
        for o in render_all(parse_llmservice(document(monitoring)))
        if o["kind"] == "PrometheusRule"
    ]
    assert len(found) <= 1
    return found[0] if found else None


def rules(monitoring: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    rendered = rule(monitoring)
    assert rendered is not None
    (group,) = rendered["spec"]["groups"]
    return {r["alert"]: r for r in group["rules"]}


def test_one_rule_named_after_the_llmservice_with_every_alert() -> None:
    rendered = rule()
    assert rendered is not None
    assert rendered["metadata"]["name"] == "chat-alerts"
    assert rendered["metadata"]["namespace"] == "team-a"
    assert set(rules()) == EXPECTED_ALERTS


def test_disabled_renders_nothing() -> None:
    assert rule({"prometheusRule": {"enabled": False}}) is None


def test_every_alert_explains_itself_and_has_a_severity() -> None:
    for name, found in rules().items():
        assert found["labels"]["severity"] in {"warning", "critical"}, name
        assert found["labels"]["llmservice"] == "chat", name
        assert found["annotations"]["summary"].startswith("LLMService chat in team-a"), name
        assert len(found["annotations"]["description"]) > 100, name
        assert "$value" not in str(found["annotations"]), name
        assert re.fullmatch(r"\d+[smh]", found["for"]), name


def test_every_selector_is_scoped_to_this_llmservice() -> None:
    for name, found in rules().items():
        selectors = re.findall(r"\{([^{}]*)\}", found["expr"].replace("{{", ""))
        assert selectors, name
        for selector in selectors:
            assert 'namespace="team-a"' in selector, (name, selector)
        assert (
            'app_kubernetes_io_instance="chat"' in found["expr"]
            or 'llmservice="chat"' in found["expr"]
        ), name


def test_thresholds_and_durations_come_from_the_spec() -> None:
    found = rules(
        {
            "labels": {"release": "kube-prometheus"},
            "prometheusRule": {
                "for": "10m",
                "unavailableFor": "30m",
                "alertLabels": {"team": "ml"},
                "thresholds": {
                    "timeToFirstTokenSeconds": 3.5,
                    "engineQueuedRequests": 7,
                    "routerQueuedRequests": 70,
                    "kvCacheUsage": 0.8,
                    "preemptionsPerSecond": 0.5,
                    "routerErrorRatio": 0.02,
                    "routerRejectionRatio": 0.3,
                    "gpuMemoryUsage": 0.99,
                },
            },
        }
    )
    expected_tail = {
        "LLMServiceTimeToFirstTokenHigh": "> 3.5",
        "LLMServiceEngineQueueHigh": "> 7",
        "LLMServiceRouterQueueHigh": "> 70",
        "LLMServiceKVCacheSaturated": "> 0.8",
        "LLMServicePreemptions": "> 0.5",
        "LLMServiceRouterServerErrors": "> 0.02",
        "LLMServiceRouterRejections": "> 0.3",
        "LLMServiceGPUMemoryNearFull": "> 0.99",
    }
    for name, tail in expected_tail.items():
        assert found[name]["expr"].endswith(tail), name
        assert found[name]["for"] == "10m", name
    assert found["LLMServiceEngineReplicasUnavailable"]["for"] == "30m"
    assert found["LLMServiceNotReady"]["for"] == "30m"
    assert all(r["labels"]["team"] == "ml" for r in found.values())
    labelled = rule({"labels": {"release": "kube-prometheus"}})
    assert labelled is not None
    assert labelled["metadata"]["labels"]["release"] == "kube-prometheus"


def test_alert_names_match_the_module_table() -> None:
    service = parse_llmservice(document())
    assert {a.name for a in alerts.alerts(service)} == EXPECTED_ALERTS
