"""Every rendered object of every example is valid for the target Kubernetes version."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from llmservice.api.validation import parse_llmservice
from llmservice.render import render_all
from tests.unit.golden import EXAMPLES
from tests.unit.render.schemas import TARGET_KUBERNETES_VERSION, validate_object


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.stem for e in EXAMPLES])
def test_rendered_objects_are_schema_valid(example: Path) -> None:
    document = yaml.safe_load(example.read_text(encoding="utf-8"))
    objects = render_all(parse_llmservice(document))
    assert objects
    for obj in objects:
        validate_object(obj)


def test_validator_rejects_an_unknown_field() -> None:
    # Proves the strict check above can fail.
    bad = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "x"},
        "spec": {"ports": [{"port": 80}], "bogus": True},
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, TARGET_KUBERNETES_VERSION, strict=True)
