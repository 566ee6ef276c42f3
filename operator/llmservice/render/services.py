"""The Services: `<name>` for the router (the endpoint) and `<name>-engine` (headless).

The router does not use the engine Service to route (it watches the engine Pods and picks a
replica itself); the headless Service exists for ServiceMonitors and for direct debugging.
"""

from __future__ import annotations

from typing import Any

from llmservice.api import LLMService
from llmservice.render import naming
from llmservice.render.templating import render_template


def endpoint_url(service: LLMService) -> str:
    """The in-cluster OpenAI base URL that the status reports."""
    return f"http://{naming.router_service_name(service)}.{service.namespace}.svc/v1"


def render(service: LLMService) -> list[dict[str, Any]]:
    return render_template(
        "services.yaml.j2",
        router_metadata=naming.object_meta(
            service, naming.router_service_name(service), naming.ROUTER
        ),
        router_selector=naming.selector_labels(service, naming.ROUTER),
        router_service_port=naming.ROUTER_SERVICE_PORT,
        engine_metadata=naming.object_meta(service, naming.engine_name(service), naming.ENGINE),
        engine_selector=naming.selector_labels(service, naming.ENGINE),
        engine_port=naming.ENGINE_PORT,
    )
