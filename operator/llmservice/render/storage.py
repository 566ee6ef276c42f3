"""The model cache claim `<name>-models`, when `storage.enabled`.

The claim is owned by the LLMService, so deleting the LLMService deletes the cached weights
with it; to keep weights across deletions, point `storage.existingClaim` at a claim you own.
"""

from __future__ import annotations

from typing import Any

from llmservice.api import LLMService
from llmservice.render import naming
from llmservice.render.templating import render_template


def render(service: LLMService) -> list[dict[str, Any]]:
    storage = service.spec.storage
    if not storage.enabled:
        return []
    return render_template(
        "models-pvc.yaml.j2",
        metadata=naming.object_meta(service, naming.models_claim_name(service), naming.MODELS),
        access_modes=list(storage.access_modes),
        storage_class_name=storage.storage_class_name,
        size=storage.size,
    )
