"""The PrometheusRule `<name>-alerts`, when `monitoring.prometheusRule.enabled`.

One rule group per LLMService, every expression scoped to it:
- engine and router series by `namespace` and `app_kubernetes_io_instance` (the label the
  ServiceMonitors' `targetLabels` add, as the dashboard selects them);
- the operator's own series by `namespace` and `llmservice` (its ServiceMonitor keeps the
  operator's labels, `honorLabels`, as kube-state-metrics' does);
- the DCGM exporter's GPU series by `namespace` and `pod`, joined to the engine Pods that
  report vLLM metrics for this LLMService, so a GPU counts only while it serves it.

Annotations name labels (`{{ $labels.pod }}`) and the thresholds, never `$value`: the alert
says what crossed which line, and the graph says by how much. Whether the cluster has the
PrometheusRule CRD is the controller's question, as for the ServiceMonitors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llmservice.api import LLMService
from llmservice.render import naming
from llmservice.render.templating import render_template

PROMETHEUS_RULE_API_VERSION = "monitoring.coreos.com/v1"
PROMETHEUS_RULE_KIND = "PrometheusRule"
ALERTS = "alerts"
RATE_WINDOW = "5m"
# The engine series' own labels kept on per-replica alerts, and the LLMService's.
SERVICE_LABELS = "namespace, app_kubernetes_io_instance"
REPLICA_LABELS = f"{SERVICE_LABELS}, pod"
# Reasons for Ready=False that are what the spec asks for, not a fault.
INTENDED_NOT_READY = ("ScaledToZero",)


@dataclass(frozen=True)
class Alert:
    name: str
    expr: str
    duration: str
    severity: str
    summary: str
    description: str


def alerts_name(service: LLMService) -> str:
    return f"{service.name}-{ALERTS}"


def _seconds(value: float) -> str:
    return f"{value:g}s"


def _percent(value: float) -> str:
    return f"{value * 100:g}%"


def alerts(service: LLMService) -> list[Alert]:
    """The alerts of one LLMService, in a fixed order."""
    rule = service.spec.monitoring.prometheus_rule
    limits = rule.thresholds
    where = f"{service.name} in {service.namespace}"
    own = f'namespace="{service.namespace}", app_kubernetes_io_instance="{service.name}"'
    operator = f'namespace="{service.namespace}", llmservice="{service.name}"'
    gpus = f'namespace="{service.namespace}"'
    engines = f"group by ({REPLICA_LABELS}) (vllm:num_requests_running{{{own}}})"
    window = RATE_WINDOW
    requests = "llmservice_router_requests_total"
    answered = f"sum by ({SERVICE_LABELS}) (rate({requests}{{{own}}}[{window}]))"
    errors = f'sum by ({SERVICE_LABELS}) (rate({requests}{{{own}, code=~"5.."}}[{window}]))'
    replicas = "llmservice_operator_engine_replicas"
    condition = "llmservice_operator_llmservice_condition"
    intended = "|".join(INTENDED_NOT_READY)
    return [
        Alert(
            "LLMServiceTimeToFirstTokenHigh",
            f"histogram_quantile(0.95, sum by ({SERVICE_LABELS}, le) "
            f"(rate(vllm:time_to_first_token_seconds_bucket{{{own}}}[{window}])))"
            f" > {limits.time_to_first_token_seconds:g}",
            rule.for_,
            "warning",
            f"LLMService {where}: p95 time to first token above"
            f" {_seconds(limits.time_to_first_token_seconds)}",
            "Clients wait longer than the threshold for the first token. Usual causes: requests"
            " queue because every replica runs maxNumSeqs sequences, long prompts not in the"
            " prefix cache, or preemptions. Check the dashboard's queue, KV cache and"
            " preemption panels; add engine replicas (engine.replicas) or lower the load."
            " Threshold: monitoring.prometheusRule.thresholds.timeToFirstTokenSeconds.",
        ),
        Alert(
            "LLMServiceEngineQueueHigh",
            f"max by ({REPLICA_LABELS}) (vllm:num_requests_waiting{{{own}}})"
            f" > {limits.engine_queued_requests}",
            rule.for_,
            "warning",
            f"LLMService {where}: engine replica {{{{ $labels.pod }}}} has more than"
            f" {limits.engine_queued_requests} requests waiting",
            "The replica already runs as many sequences as it can (engine.maxNumSeqs or its KV"
            " cache) and the rest wait in vLLM's queue, so time to first token grows. If one"
            " replica only is affected, sessions pinned to it may be unbalanced (see the"
            " router's session panel); if all are, add replicas. Threshold:"
            " monitoring.prometheusRule.thresholds.engineQueuedRequests.",
        ),
        Alert(
            "LLMServiceRouterQueueHigh",
            f"sum by ({SERVICE_LABELS}) (llmservice_router_queued{{{own}}})"
            f" > {limits.router_queued_requests}",
            rule.for_,
            "warning",
            f"LLMService {where}: more than {limits.router_queued_requests} requests wait in"
            " the router's queue",
            "Every engine replica is at its in-flight limit and the router holds the rest;"
            " requests that wait past the queue timeout are rejected with 429. Add engine"
            " replicas, or raise router.admission limits if the engines have headroom. Threshold:"
            " monitoring.prometheusRule.thresholds.routerQueuedRequests.",
        ),
        Alert(
            "LLMServiceKVCacheSaturated",
            f"max by ({REPLICA_LABELS}) (vllm:kv_cache_usage_perc{{{own}}})"
            f" > {limits.kv_cache_usage:g}",
            rule.for_,
            "warning",
            f"LLMService {where}: KV cache of replica {{{{ $labels.pod }}}} above"
            f" {_percent(limits.kv_cache_usage)}",
            "The replica's KV cache is nearly full: new sequences wait and running ones may be"
            " preempted and recomputed. Lower engine.maxNumSeqs or model.maxModelLen, raise"
            " engine.gpuMemoryUtilization, or add replicas. Threshold:"
            " monitoring.prometheusRule.thresholds.kvCacheUsage.",
        ),
        Alert(
            "LLMServicePreemptions",
            f"sum by ({REPLICA_LABELS}) (rate(vllm:num_preemptions_total{{{own}}}[{window}]))"
            f" > {limits.preemptions_per_second:g}",
            rule.for_,
            "warning",
            f"LLMService {where}: replica {{{{ $labels.pod }}}} preempts more than"
            f" {limits.preemptions_per_second:g} sequences per second",
            "vLLM evicts running sequences when the KV cache runs out and recomputes them"
            " later, which wastes GPU time and stretches latency. It follows a saturated KV"
            " cache: see LLMServiceKVCacheSaturated. Threshold:"
            " monitoring.prometheusRule.thresholds.preemptionsPerSecond.",
        ),
        Alert(
            "LLMServiceRouterServerErrors",
            f"{errors} / {answered} > {limits.router_error_ratio:g}",
            rule.for_,
            "critical",
            f"LLMService {where}: more than {_percent(limits.router_error_ratio)} of the"
            " router's answers are 5xx",
            "Clients get server errors. The router's errors-by-cause panel says whether"
            " engines refuse connections, time out before the first byte, or answer 5xx"
            " themselves; check the engine Pods' logs and restarts, and"
            " LLMServiceReplicaNotRoutable. Threshold:"
            " monitoring.prometheusRule.thresholds.routerErrorRatio.",
        ),
        Alert(
            "LLMServiceRouterRejections",
            f"sum by ({SERVICE_LABELS}) (rate(llmservice_router_rejected_total{{{own}}}"
            f"[{window}])) / {answered} > {limits.router_rejection_ratio:g}",
            rule.for_,
            "warning",
            f"LLMService {where}: the router rejects more than"
            f" {_percent(limits.router_rejection_ratio)} of requests",
            "Requests are refused with 429 by rate limits, a full queue or the queue timeout."
            " `sum by (reason, key) (rate(llmservice_router_rejected_total[5m]))` shows which"
            " limit and which API key; raise that key's limits, or add engine replicas when the"
            " reasons are queue_full or queue_timeout. Threshold:"
            " monitoring.prometheusRule.thresholds.routerRejectionRatio.",
        ),
        Alert(
            "LLMServiceEngineReplicasUnavailable",
            f'max by (namespace, llmservice) ({replicas}{{{operator}, state="desired"}})'
            f' - max by (namespace, llmservice) ({replicas}{{{operator}, state="ready"}}) > 0',
            rule.unavailable_for,
            "warning",
            f"LLMService {where}: engine replicas unavailable for {rule.unavailable_for}",
            "Fewer engine replicas are ready than engine.replicas asks for, for longer than a"
            " model takes to load. `kubectl describe llms` names the reason in its"
            " EngineAvailable condition (Unschedulable for lack of GPUs, ContainerFailing,"
            " SecretNotFound); see the engine Pods' events and logs.",
        ),
        Alert(
            "LLMServiceStalled",
            f"max by (namespace, llmservice, reason)"
            f' ({condition}{{{operator}, type="Stalled", status="True"}}) == 1',
            rule.for_,
            "critical",
            f"LLMService {where} is Stalled: {{{{ $labels.reason }}}}",
            "The operator found a problem that waiting will not fix (reason in the alert's"
            " labels: Unschedulable, SecretNotFound, ContainerFailing, FailedCreate or"
            " InvalidSpec). `kubectl describe llms` shows the condition's message and a"
            " Warning Event; the README's status table says what fixes each reason.",
        ),
        Alert(
            "LLMServiceNotReady",
            f"max by (namespace, llmservice, reason) ({condition}"
            f'{{{operator}, type="Ready", status!="True", reason!~"{intended}"}}) == 1',
            rule.unavailable_for,
            "critical",
            f"LLMService {where} not Ready for {rule.unavailable_for}: {{{{ $labels.reason }}}}",
            "The LLMService does not serve: no engine replica or no router replica is"
            " available. `kubectl describe llms` shows the EngineAvailable and RouterAvailable"
            " conditions with their reasons. Scaled to zero on purpose does not fire.",
        ),
        Alert(
            "LLMServiceReplicaNotRoutable",
            f"count by ({SERVICE_LABELS}) ({engines})"
            f' - min by ({SERVICE_LABELS}) (llmservice_router_replicas{{{own}, state="routable"}})'
            " > 0",
            rule.for_,
            "warning",
            f"LLMService {where}: an engine replica serves metrics but a router does not route"
            " to it",
            "Prometheus scrapes more engine replicas than the router with the fewest routable"
            " replicas counts, for the whole period: a router ejected or never discovered a"
            " replica (the router has no ejection metric yet, so this compares its routable"
            " count with the engines Prometheus sees). Check the router's log for discovery"
            " and connection errors, and its Role on Pods.",
        ),
        Alert(
            "LLMServiceGPUMemoryNearFull",
            f"max by (namespace, pod, gpu) ((DCGM_FI_DEV_FB_USED{{{gpus}}}"
            f" / (DCGM_FI_DEV_FB_USED{{{gpus}}} + DCGM_FI_DEV_FB_FREE{{{gpus}}}))"
            f" * on (namespace, pod) group_left () {engines})"
            f" > {limits.gpu_memory_usage:g}",
            rule.for_,
            "warning",
            f"LLMService {where}: GPU {{{{ $labels.gpu }}}} of {{{{ $labels.pod }}}} above"
            f" {_percent(limits.gpu_memory_usage)} memory",
            "The GPU's memory (NVIDIA DCGM exporter) is nearly full. vLLM takes"
            " engine.gpuMemoryUtilization of it at start; more than that means another"
            " process shares the GPU or the engine is close to running out of memory. Check"
            " `nvidia-smi` on the node and lower engine.gpuMemoryUtilization. Threshold:"
            " monitoring.prometheusRule.thresholds.gpuMemoryUsage.",
        ),
    ]


def _rule(alert: Alert, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "alert": alert.name,
        "expr": alert.expr,
        "for": alert.duration,
        "labels": {**labels, "severity": alert.severity},
        "annotations": {"summary": alert.summary, "description": alert.description},
    }


def render(service: LLMService) -> list[dict[str, Any]]:
    monitoring = service.spec.monitoring
    rule = monitoring.prometheus_rule
    if not rule.enabled:
        return []
    meta = naming.object_meta(service, alerts_name(service), ALERTS)
    meta["labels"] = {**(monitoring.labels or {}), **naming.labels(service, ALERTS)}
    alert_labels = {**(rule.alert_labels or {}), "llmservice": service.name}
    group = {
        "name": f"llmservice.{service.namespace}.{service.name}",
        "rules": [_rule(alert, alert_labels) for alert in alerts(service)],
    }
    return render_template("prometheusrule.yaml.j2", metadata=meta, groups=[group])
