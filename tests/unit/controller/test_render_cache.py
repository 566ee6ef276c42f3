"""Validation and rendering run once per generation, not once per reconcile."""

from __future__ import annotations

import copy

from llmservice.api.validation import InvalidLLMService
from llmservice.controller.render_cache import RenderCache
from tests.unit.api.fixtures import MINIMAL


def _body(generation: int, **spec: object) -> dict[str, object]:
    body = copy.deepcopy(MINIMAL)
    body["metadata"] = {**body["metadata"], "uid": "u1", "generation": generation}
    body["spec"] = {**body["spec"], **spec}
    return body


def test_same_generation_is_rendered_once() -> None:
    cache = RenderCache()
    first = cache.get(_body(1))
    assert cache.get(_body(1)) is first


def test_a_new_generation_or_object_renders_again() -> None:
    cache = RenderCache()
    first = cache.get(_body(1))
    second = cache.get(_body(2, engine={"replicas": 3}))
    assert second is not first
    assert not isinstance(second, InvalidLLMService)
    assert second[0].spec.engine.replicas == 3
    recreated = _body(2, engine={"replicas": 3})
    recreated["metadata"]["uid"] = "u2"  # type: ignore[index]
    assert cache.get(recreated) is not second


def test_invalid_spec_is_cached_as_the_error() -> None:
    cache = RenderCache()
    result = cache.get(_body(1, engine={"gpus": 0}))
    assert isinstance(result, InvalidLLMService)
    assert any(error.path == "spec.engine.gpus" for error in result.errors)
