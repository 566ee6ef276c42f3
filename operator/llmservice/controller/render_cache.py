"""Validation and rendering of each LLMService, kept while its generation is unchanged.

A spec is immutable within one generation, and every LLMService is reconciled every few
seconds: validating and rendering again each time would cost tens of milliseconds per
object for nothing. One entry per LLMService, so the cache stays bounded.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmservice.api import LLMService
from llmservice.api.validation import InvalidLLMService, parse_llmservice
from llmservice.render import render_all

Rendered = tuple[LLMService, list[dict[str, Any]]] | InvalidLLMService

__all__ = ["RenderCache", "Rendered"]


class RenderCache:
    """The parsed LLMService and its rendered children (or why it is invalid), per generation."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], tuple[str, int, Rendered]] = {}

    def get(self, body: Mapping[str, Any]) -> Rendered:
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        uid, generation = str(meta.get("uid")), int(meta.get("generation", 0))
        cached = self._entries.get(key)
        if cached is not None and cached[:2] == (uid, generation):
            return cached[2]
        document = {k: body[k] for k in ("apiVersion", "kind", "metadata", "spec") if k in body}
        result: Rendered
        try:
            service = parse_llmservice(document)
            result = (service, render_all(service))
        except InvalidLLMService as invalid:
            result = invalid
        self._entries[key] = (uid, generation, result)
        return result

    def forget(self, namespace: str, name: str) -> None:
        self._entries.pop((namespace, name), None)
