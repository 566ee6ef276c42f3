"""ServiceMonitors for the engine and the router, when `monitoring.serviceMonitor`.

Rendering always returns them when enabled; whether the cluster has the Prometheus Operator
CRD is the controller's question (it skips them and says so in a condition).
"""

from __future__ import annotations

from typing import Any

from llmservice.api import LLMService
from llmservice.render import naming
from llmservice.render.templating import render_template

SERVICE_MONITOR_API_VERSION = "monitoring.coreos.com/v1"
SERVICE_MONITOR_KIND = "ServiceMonitor"


def _monitor(service: LLMService, name: str, component: str) -> dict[str, Any]:
    meta = naming.object_meta(service, name, component)
    meta["labels"] = {**(service.spec.monitoring.labels or {}), **naming.labels(service, component)}
    return {"metadata": meta, "selector": naming.selector_labels(service, component)}


def render(service: LLMService) -> list[dict[str, Any]]:
    monitoring = service.spec.monitoring
    if not monitoring.service_monitor:
        return []
    monitors = [
        _monitor(service, naming.engine_name(service), naming.ENGINE),
        _monitor(service, naming.router_name(service), naming.ROUTER),
    ]
    return render_template(
        "servicemonitors.yaml.j2", monitors=monitors, interval=monitoring.interval
    )
