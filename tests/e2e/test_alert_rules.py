"""The rendered PrometheusRule under Prometheus's own tools: `promtool check rules` and
`promtool test rules`.

The unit tests run on synthetic series in promtool's rule-test format: for every alert, a
scenario that crosses its line (it must be pending before its `for` has passed and firing
after, with exactly the labels and annotations expected) and one that stays under it (no
alert at any time). promtool is built by `llmservice sandbox build`, like the other
binaries; no cluster is needed.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmservice.api.validation import parse_llmservice
from llmservice.render import render_all
from llmservice.sandbox.versions import default_layout

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
NAMESPACE, NAME = "default", "chat"
ENGINE = f'namespace="{NAMESPACE}", app_kubernetes_io_instance="{NAME}"'
OPERATOR = f'namespace="{NAMESPACE}", llmservice="{NAME}"'
POD, OTHER_POD = "chat-engine-5d8f9-abcde", "chat-engine-5d8f9-fghij"
LABEL = re.compile(r"\{\{ \$labels\.(\w+) \}\}")


def promtool() -> Path:
    binary = default_layout().binary("promtool")
    if not binary.is_file():
        pytest.fail(f"{binary} is missing: run `llmservice sandbox build`")
    return binary


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(promtool()), *args], capture_output=True, text=True, check=False, timeout=120
    )


def prometheus_rule(document: dict[str, Any]) -> dict[str, Any]:
    (found,) = [o for o in render_all(parse_llmservice(document)) if o["kind"] == "PrometheusRule"]
    return found


def chat(spec: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "serving.llmservice.dev/v1alpha1",
        "kind": "LLMService",
        "metadata": {"name": NAME, "namespace": NAMESPACE},
        "spec": {"model": {"name": "Qwen/Qwen2.5-0.5B-Instruct"}, **(spec or {})},
    }


def write_rule_file(rule: dict[str, Any], path: Path) -> Path:
    """A PrometheusRule's spec is a Prometheus rule file (`groups:`)."""
    path.write_text(yaml.safe_dump(rule["spec"], sort_keys=False), encoding="utf-8")
    return path


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_promtool_checks_the_rule_of_every_example(example: Path, tmp_path: Path) -> None:
    document = yaml.safe_load(example.read_text(encoding="utf-8"))
    document["metadata"].setdefault("namespace", "default")
    rules = write_rule_file(prometheus_rule(document), tmp_path / "rules.yaml")
    checked = run_promtool("check", "rules", str(rules))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 12 rules found" in checked.stdout


def test_promtool_rejects_a_broken_rule(tmp_path: Path) -> None:
    """The check can fail: a rule file with a PromQL syntax error does not pass."""
    rule = prometheus_rule(chat())
    rule["spec"]["groups"][0]["rules"][0]["expr"] += " >"
    checked = run_promtool("check", "rules", str(write_rule_file(rule, tmp_path / "bad.yaml")))
    assert checked.returncode != 0
    assert "parse error" in checked.stdout + checked.stderr


@dataclass
class Scenario:
    """Series for one alert: `firing` crosses the line, `quiet` stays under it."""

    alert: str
    firing: dict[str, str]
    quiet: dict[str, str]
    labels: dict[str, str]
    # Minutes: still pending at `pending_at` (the `for` has not passed), firing at `fires_at`.
    pending_at: int = 3
    fires_at: int = 12
    extra: dict[str, str] = field(default_factory=dict)


def bucket(le: str, values: str) -> tuple[str, str]:
    return f'vllm:time_to_first_token_seconds_bucket{{{ENGINE}, pod="{POD}", le="{le}"}}', values


def engine(metric: str, pod: str = POD) -> str:
    return f'{metric}{{{ENGINE}, pod="{pod}"}}'


def gpu(metric: str, pod: str, index: str = "0") -> str:
    return f'{metric}{{namespace="{NAMESPACE}", pod="{pod}", gpu="{index}", UUID="GPU-{pod}-{index}", modelName="NVIDIA H100 80GB HBM3"}}'  # noqa: E501


def condition(kind: str, status: str, reason: str) -> str:
    return (
        "llmservice_operator_llmservice_condition"
        f'{{{OPERATOR}, type="{kind}", status="{status}", reason="{reason}"}}'
    )


SERVICE = {"namespace": NAMESPACE, "app_kubernetes_io_instance": NAME}
REPLICA = {**SERVICE, "pod": POD}
OWN = {"namespace": NAMESPACE, "llmservice": NAME}
REQUESTS = "llmservice_router_requests_total"

SCENARIOS = [
    Scenario(
        "LLMServiceTimeToFirstTokenHigh",
        # Every first token between 1 and 5 s (p95 about 4.8 s), or under 0.5 s.
        dict(
            [
                bucket("0.5", "0x20"),
                bucket("1", "0x20"),
                bucket("5", "0+10x20"),
                bucket("+Inf", "0+10x20"),
            ]
        ),
        dict(
            [
                bucket("0.5", "0+10x20"),
                bucket("1", "0+10x20"),
                bucket("5", "0+10x20"),
                bucket("+Inf", "0+10x20"),
            ]
        ),
        SERVICE,
    ),
    Scenario(
        "LLMServiceEngineQueueHigh",
        {engine("vllm:num_requests_waiting"): "20x20"},
        {engine("vllm:num_requests_waiting"): "10x20"},
        REPLICA,
    ),
    Scenario(
        "LLMServiceRouterQueueHigh",
        {
            f'llmservice_router_queued{{{ENGINE}, pod="chat-router-a", key="team-a"}}': "40x20",
            f'llmservice_router_queued{{{ENGINE}, pod="chat-router-b", key="team-a"}}': "30x20",
        },
        {
            f'llmservice_router_queued{{{ENGINE}, pod="chat-router-a", key="team-a"}}': "30x20",
            f'llmservice_router_queued{{{ENGINE}, pod="chat-router-b", key="team-a"}}': "20x20",
        },
        SERVICE,
    ),
    Scenario(
        "LLMServiceKVCacheSaturated",
        {engine("vllm:kv_cache_usage_perc"): "0.99x20"},
        {engine("vllm:kv_cache_usage_perc"): "0.9x20"},
        REPLICA,
    ),
    Scenario(
        "LLMServicePreemptions",
        {engine("vllm:num_preemptions_total"): "0+60x20"},  # 1 per second
        {engine("vllm:num_preemptions_total"): "0+3x20"},  # 0.05 per second
        REPLICA,
    ),
    Scenario(
        "LLMServiceRouterServerErrors",
        {
            f'{REQUESTS}{{{ENGINE}, pod="chat-router-a", code="200"}}': "0+600x20",
            f'{REQUESTS}{{{ENGINE}, pod="chat-router-a", code="503"}}': "0+60x20",
        },
        {
            f'{REQUESTS}{{{ENGINE}, pod="chat-router-a", code="200"}}': "0+600x20",
            f'{REQUESTS}{{{ENGINE}, pod="chat-router-a", code="503"}}': "0+6x20",
        },
        SERVICE,
    ),
    Scenario(
        "LLMServiceRouterRejections",
        {
            f'{REQUESTS}{{{ENGINE}, pod="chat-router-a", code="200"}}': "0+600x20",
            f'llmservice_router_rejected_total{{{ENGINE}, pod="chat-router-a", reason="queue_full", key="team-a"}}': "0+120x20",  # noqa: E501
        },
        {
            f'{REQUESTS}{{{ENGINE}, pod="chat-router-a", code="200"}}': "0+600x20",
            f'llmservice_router_rejected_total{{{ENGINE}, pod="chat-router-a", reason="queue_full", key="team-a"}}': "0+12x20",  # noqa: E501
        },
        SERVICE,
    ),
    Scenario(
        "LLMServiceEngineReplicasUnavailable",
        {
            f'llmservice_operator_engine_replicas{{{OPERATOR}, state="desired"}}': "2x30",
            f'llmservice_operator_engine_replicas{{{OPERATOR}, state="ready"}}': "1x30",
        },
        {
            f'llmservice_operator_engine_replicas{{{OPERATOR}, state="desired"}}': "2x30",
            f'llmservice_operator_engine_replicas{{{OPERATOR}, state="ready"}}': "2x30",
        },
        OWN,
        pending_at=12,
        fires_at=20,
    ),
    Scenario(
        "LLMServiceStalled",
        {condition("Stalled", "True", "Unschedulable"): "1x20"},
        {condition("Stalled", "False", "Reconciled"): "1x20"},
        {**OWN, "reason": "Unschedulable"},
    ),
    Scenario(
        "LLMServiceNotReady",
        {condition("Ready", "False", "WaitingForEngine"): "1x30"},
        # Scaled to zero on purpose: not a fault.
        {condition("Ready", "False", "ScaledToZero"): "1x30"},
        {**OWN, "reason": "WaitingForEngine"},
        pending_at=12,
        fires_at=20,
    ),
    Scenario(
        "LLMServiceReplicaNotRoutable",
        {
            engine("vllm:num_requests_running"): "1x20",
            engine("vllm:num_requests_running", OTHER_POD): "1x20",
            f'llmservice_router_replicas{{{ENGINE}, pod="chat-router-a", state="routable"}}': "2x20",  # noqa: E501
            f'llmservice_router_replicas{{{ENGINE}, pod="chat-router-b", state="routable"}}': "1x20",  # noqa: E501
        },
        {
            engine("vllm:num_requests_running"): "1x20",
            engine("vllm:num_requests_running", OTHER_POD): "1x20",
            f'llmservice_router_replicas{{{ENGINE}, pod="chat-router-a", state="routable"}}': "2x20",  # noqa: E501
            f'llmservice_router_replicas{{{ENGINE}, pod="chat-router-b", state="routable"}}': "2x20",  # noqa: E501
        },
        SERVICE,
    ),
    Scenario(
        "LLMServiceGPUMemoryNearFull",
        {
            engine("vllm:num_requests_running"): "1x20",
            gpu("DCGM_FI_DEV_FB_USED", POD): "79000x20",
            gpu("DCGM_FI_DEV_FB_FREE", POD): "1000x20",
        },
        {
            engine("vllm:num_requests_running"): "1x20",
            gpu("DCGM_FI_DEV_FB_USED", POD): "72000x20",
            gpu("DCGM_FI_DEV_FB_FREE", POD): "8000x20",
        },
        {"namespace": NAMESPACE, "pod": POD, "gpu": "0"},
        # A full GPU of a Pod that is not one of this LLMService's engines never counts.
        extra={
            gpu("DCGM_FI_DEV_FB_USED", "other-engine-7c9d-xyz12"): "80000x20",
            gpu("DCGM_FI_DEV_FB_FREE", "other-engine-7c9d-xyz12"): "0x20",
        },
    ),
]


def expand(text: str, labels: dict[str, str]) -> str:
    """The annotation as Prometheus renders it: only `$labels` are used in them."""
    expanded = LABEL.sub(lambda m: labels[m.group(1)], text)
    assert "{{" not in expanded, f"a template other than $labels: {text}"
    return expanded


def series(values: dict[str, str]) -> list[dict[str, str]]:
    return [{"series": name, "values": v} for name, v in values.items()]


def rule_test_cases(rules: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    cases = []
    for scenario in SCENARIOS:
        rule = rules[scenario.alert]
        labels = {**scenario.labels, **rule["labels"]}
        expected = {
            "exp_labels": labels,
            "exp_annotations": {k: expand(v, labels) for k, v in rule["annotations"].items()},
        }
        at = [scenario.pending_at, scenario.fires_at]
        cases.append({
            "name": f"{scenario.alert} fires",
            "interval": "1m",
            "input_series": series({**scenario.firing, **scenario.extra}),
            "alert_rule_test": [
                {"eval_time": f"{at[0]}m", "alertname": scenario.alert, "exp_alerts": []},
                {"eval_time": f"{at[1]}m", "alertname": scenario.alert,
                 "exp_alerts": [expected]},
            ],
        })  # fmt: skip
        cases.append({
            "name": f"{scenario.alert} stays silent",
            "interval": "1m",
            "input_series": series({**scenario.quiet, **scenario.extra}),
            "alert_rule_test": [
                {"eval_time": f"{m}m", "alertname": scenario.alert, "exp_alerts": []}
                for m in (scenario.pending_at, scenario.fires_at)
            ],
        })  # fmt: skip
    return cases


def write_tests(tmp_path: Path, rule: dict[str, Any]) -> Path:
    write_rule_file(rule, tmp_path / "rules.yaml")
    (group,) = rule["spec"]["groups"]
    rules = {r["alert"]: r for r in group["rules"]}
    assert set(rules) == {s.alert for s in SCENARIOS}, "every alert needs a scenario"
    tests = {"rule_files": ["rules.yaml"], "evaluation_interval": "1m",
             "tests": rule_test_cases(rules)}  # fmt: skip
    path = tmp_path / "tests.yaml"
    path.write_text(yaml.safe_dump(tests, sort_keys=False), encoding="utf-8")
    return path


def test_every_alert_fires_when_it_should_and_stays_silent_otherwise(tmp_path: Path) -> None:
    tests = write_tests(tmp_path, prometheus_rule(chat()))
    result = run_promtool("test", "rules", str(tests))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == 1, result.stdout


def test_the_rule_tests_can_fail(tmp_path: Path) -> None:
    """With thresholds above every firing scenario, each 'fires' case must fail."""
    spec = {
        "monitoring": {
            "prometheusRule": {
                "thresholds": {
                    "timeToFirstTokenSeconds": 3600, "engineQueuedRequests": 1000,
                    "routerQueuedRequests": 1000, "kvCacheUsage": 1, "preemptionsPerSecond": 100,
                    "routerErrorRatio": 1, "routerRejectionRatio": 1, "gpuMemoryUsage": 1,
                }
            }
        }
    }  # fmt: skip
    relaxed = prometheus_rule(chat(spec))
    # The expected annotations are the default rule's: the relaxed rule never fires anyway.
    default = prometheus_rule(chat())
    tests = write_tests(tmp_path, default)
    write_rule_file(relaxed, tmp_path / "rules.yaml")
    result = run_promtool("test", "rules", str(tests))
    assert result.returncode != 0
    output = result.stdout + result.stderr
    thresholded = [
        s.alert for s in SCENARIOS
        if s.alert not in {"LLMServiceEngineReplicasUnavailable", "LLMServiceStalled",
                           "LLMServiceNotReady", "LLMServiceReplicaNotRoutable"}
    ]  # fmt: skip
    for alert in thresholded:
        assert f"{alert} fires" in output, alert
