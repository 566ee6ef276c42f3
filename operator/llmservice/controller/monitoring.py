"""Which monitoring children to apply, and the MonitoringConfigured condition that says so.

ServiceMonitors and the PrometheusRule are Prometheus Operator kinds: a cluster without its
CRDs cannot store them, so they are left out (nothing fails) and the condition is False with
reason CRDNotInstalled, naming each missing CRD. It turns True once every wanted kind is
applied, or with reason Disabled when the spec wants none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llmservice.api import LLMService
from llmservice.controller import conditions as c
from llmservice.controller.conditions import Observation
from llmservice.controller.kinds import (
    PROMETHEUS_RULE,
    PROMETHEUS_RULE_CRD,
    SERVICE_MONITOR,
    SERVICE_MONITOR_CRD,
)


@dataclass(frozen=True)
class MonitoringKind:
    kind: str
    crd: str
    field: str
    applied: str


def _wanted(service: LLMService) -> list[MonitoringKind]:
    monitoring = service.spec.monitoring
    wanted = []
    if monitoring.service_monitor:
        wanted.append(
            MonitoringKind(
                SERVICE_MONITOR.kind, SERVICE_MONITOR_CRD, "serviceMonitor", "ServiceMonitors"
            )
        )
    if monitoring.prometheus_rule.enabled:
        wanted.append(
            MonitoringKind(
                PROMETHEUS_RULE.kind, PROMETHEUS_RULE_CRD, "prometheusRule", "PrometheusRule"
            )
        )
    return wanted


def monitoring_children(
    service: LLMService, desired: list[dict[str, Any]], installed_crds: frozenset[str]
) -> tuple[list[dict[str, Any]], Observation]:
    """`desired` without the kinds whose CRD is missing, and the condition to report."""
    wanted = _wanted(service)
    if not wanted:
        return desired, Observation(
            c.MONITORING_CONFIGURED,
            c.TRUE,
            c.DISABLED,
            "monitoring.serviceMonitor and monitoring.prometheusRule.enabled are false",
        )
    missing = [kind for kind in wanted if kind.crd not in installed_crds]
    if missing:
        skipped = {kind.kind for kind in missing}
        kept = [obj for obj in desired if obj["kind"] not in skipped]
        crds = " and ".join(kind.crd for kind in missing)
        verb = "is" if len(missing) == 1 else "are"
        applied = [kind.applied for kind in wanted if kind not in missing]
        also = f"; {' and '.join(applied)} applied" if applied else ""
        return kept, Observation(
            c.MONITORING_CONFIGURED,
            c.FALSE,
            c.CRD_NOT_INSTALLED,
            f"the Prometheus Operator CRD {crds} {verb} not installed{also}",
        )
    everything = " and ".join(kind.applied for kind in wanted)
    return desired, Observation(
        c.MONITORING_CONFIGURED, c.TRUE, c.CONFIGURED, f"{everything} applied"
    )
