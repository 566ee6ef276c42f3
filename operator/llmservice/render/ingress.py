"""The Ingress `<name>`, when `ingress.enabled`.

Token streams are long-lived responses: for ingress-nginx the defaults buffer the response
and cut it at 60 s, so for that class the operator sets buffering off and long timeouts.
Annotations in the spec always win.
"""

from __future__ import annotations

from typing import Any

from llmservice.api import LLMService
from llmservice.render import naming
from llmservice.render.templating import render_template

NGINX_STREAMING_ANNOTATIONS = {
    "nginx.ingress.kubernetes.io/proxy-buffering": "off",
    "nginx.ingress.kubernetes.io/proxy-read-timeout": "3600",
    "nginx.ingress.kubernetes.io/proxy-send-timeout": "3600",
}


def ingress_annotations(service: LLMService) -> dict[str, str]:
    ingress = service.spec.ingress
    defaults = NGINX_STREAMING_ANNOTATIONS if ingress.class_name == "nginx" else {}
    return {**defaults, **(ingress.annotations or {})}


def render(service: LLMService) -> list[dict[str, Any]]:
    ingress = service.spec.ingress
    if not ingress.enabled:
        return []
    return render_template(
        "ingress.yaml.j2",
        metadata=naming.object_meta(
            service, service.name, naming.ROUTER, annotations=ingress_annotations(service)
        ),
        class_name=ingress.class_name,
        tls_secret_name=ingress.tls.secret_name if ingress.tls else None,
        host=ingress.host,
        path=ingress.path,
        service_name=naming.router_service_name(service),
    )
