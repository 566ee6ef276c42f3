"""The operator's own Prometheus metrics, and the HTTP endpoint that serves them.

=====================================================================  =============================
``llmservice_operator_reconciles_total{result}``                       reconciles: success / error
``llmservice_operator_reconcile_duration_seconds``                     time one reconcile took
``llmservice_operator_api_errors_total{verb,code}``                    API requests that failed
``llmservice_operator_scrapes_total{namespace,llmservice}``            engine /metrics scrapes
``llmservice_operator_scrape_failures_total{namespace,llmservice}``    ... that failed
``llmservice_operator_scaling_decisions_total{namespace,llmservice,``  autoscaler steps, by reason
``reason}``                                                            (ScaleUp, ScaleDown, ...)
``llmservice_operator_llmservices{type,status}``                       LLMServices by condition
``llmservice_operator_llmservice_condition{namespace,llmservice,``     1 for each condition's
``type,status,reason}``                                                current status and reason
``llmservice_operator_engine_replicas{namespace,llmservice,state}``    desired / ready replicas
=====================================================================  =============================

API errors are every answer of 400 or more, and connection failures as code 0, of the
requests the operator makes itself, by Kubernetes verb; a 404 is an answer, not an error
(a CRD or child that is not there). The per-LLMService series are read from the operator's
store (the status it last saw) when scraped, so they cost nothing between scrapes and
vanish with the LLMService. Their `namespace` is the LLMService's: the operator's
ServiceMonitor keeps it (`honorLabels`), as kube-state-metrics' does.

Nothing is global: every metric lives on the `CollectorRegistry` it is given. The endpoint
is an aiohttp server on the operator's event loop, so a scrape reads the store on the same
thread that changes it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["RECONCILE_BUCKETS", "OperatorMetrics", "serve_metrics"]

PREFIX = "llmservice_operator"
RECONCILE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
NOT_AN_ERROR = 404


class _StatusCollector(Collector):
    """Series derived from the LLMServices' stored statuses, built at scrape time."""

    def __init__(self, llmservices: Callable[[], Sequence[Mapping[str, Any]]]) -> None:
        self._llmservices = llmservices

    def collect(self) -> Iterator[Metric]:
        by_condition = GaugeMetricFamily(
            f"{PREFIX}_llmservices",
            "LLMServices by the status of each condition.",
            labels=["type", "status"],
        )
        conditions = GaugeMetricFamily(
            f"{PREFIX}_llmservice_condition",
            "1 for the current status and reason of each condition of each LLMService.",
            labels=["namespace", "llmservice", "type", "status", "reason"],
        )
        replicas = GaugeMetricFamily(
            f"{PREFIX}_engine_replicas",
            "Engine replicas of each LLMService: desired (engine.replicas) and ready.",
            labels=["namespace", "llmservice", "state"],
        )
        counts: dict[tuple[str, str], int] = {}
        for body in self._llmservices():
            meta = body.get("metadata") or {}
            namespace, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
            status = body.get("status") or {}
            for condition in status.get("conditions") or []:
                kind, value = str(condition.get("type")), str(condition.get("status"))
                reason = str(condition.get("reason") or "")
                conditions.add_metric([namespace, name, kind, value, reason], 1.0)
                counts[(kind, value)] = counts.get((kind, value), 0) + 1
            if "replicas" in status:
                replicas.add_metric([namespace, name, "desired"], float(status["replicas"]))
                ready = float(status.get("readyReplicas") or 0)
                replicas.add_metric([namespace, name, "ready"], ready)
        for (kind, value), count in sorted(counts.items()):
            by_condition.add_metric([kind, value], float(count))
        yield by_condition
        yield conditions
        yield replicas


class OperatorMetrics:
    """The operator's metrics on one registry; the handlers and the API client report here."""

    def __init__(
        self,
        registry: CollectorRegistry,
        llmservices: Callable[[], Sequence[Mapping[str, Any]]] = list,
    ) -> None:
        self.registry = registry
        self.reconciles = Counter(
            f"{PREFIX}_reconciles", "Reconciles of LLMServices.", ["result"], registry=registry
        )
        self.reconcile_duration = Histogram(
            f"{PREFIX}_reconcile_duration_seconds",
            "Time one reconcile of one LLMService took.",
            buckets=RECONCILE_BUCKETS,
            registry=registry,
        )
        self.api_errors = Counter(
            f"{PREFIX}_api_errors",
            "API server requests of the operator that failed (code 0: no answer).",
            ["verb", "code"],
            registry=registry,
        )
        self.scrapes = Counter(
            f"{PREFIX}_scrapes",
            "Scrapes of engine Pods' /metrics for throughput.",
            ["namespace", "llmservice"],
            registry=registry,
        )
        self.scrape_failures = Counter(
            f"{PREFIX}_scrape_failures",
            "Scrapes of engine Pods' /metrics that failed.",
            ["namespace", "llmservice"],
            registry=registry,
        )
        self.scaling_decisions = Counter(
            f"{PREFIX}_scaling_decisions",
            "Steps of the autoscaler: ScaleUp, ScaleDown, ScaleToZero, WakeUp.",
            ["namespace", "llmservice", "reason"],
            registry=registry,
        )
        registry.register(_StatusCollector(llmservices))

    def reconciled(self, seconds: float, ok: bool) -> None:
        self.reconciles.labels("success" if ok else "error").inc()
        self.reconcile_duration.observe(seconds)

    def api_error(self, verb: str, code: int) -> None:
        if code != NOT_AN_ERROR:
            self.api_errors.labels(verb, str(code)).inc()

    def scaled(self, namespace: str, name: str, reason: str) -> None:
        self.scaling_decisions.labels(namespace, name, reason).inc()

    def scraped(self, namespace: str, name: str, attempted: int, failed: int) -> None:
        self.scrapes.labels(namespace, name).inc(attempted)
        if failed:
            self.scrape_failures.labels(namespace, name).inc(failed)


async def serve_metrics(registry: CollectorRegistry, host: str, port: int) -> web.AppRunner:
    """Serve `/metrics` of `registry` on host:port until the returned runner is cleaned up."""

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
