"""Pure rendering: `render_all(LLMService) -> list[dict]`, one module per child kind.

No I/O, no clock, no randomness: the same LLMService always renders the same objects, so
golden files can pin them and the controller can compare them with what is live.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from llmservice.api import LLMService
from llmservice.render import (
    alerts,
    engine,
    ingress,
    monitoring,
    policies,
    router,
    services,
    storage,
)

# The order objects are applied in: storage before the Pods that mount it, RBAC before the
# router that needs it, Services before the Ingress that points at them.
RENDERERS: tuple[Callable[[LLMService], list[dict[str, Any]]], ...] = (
    storage.render,
    engine.render,
    router.render,
    services.render,
    ingress.render,
    monitoring.render,
    alerts.render,
    policies.render,
)

__all__ = ["RENDERERS", "render_all"]


def render_all(service: LLMService) -> list[dict[str, Any]]:
    """Every child object of one LLMService, in apply order."""
    return [obj for render in RENDERERS for obj in render(service)]
