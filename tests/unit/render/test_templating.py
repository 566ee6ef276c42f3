"""Templates fail loudly on missing values instead of rendering blanks."""

from __future__ import annotations

import jinja2
import pytest

from llmservice.render.templating import render_template


def test_missing_value_is_an_error() -> None:
    with pytest.raises(jinja2.UndefinedError):
        render_template("models-pvc.yaml.j2", metadata={}, access_modes=[], storage_class_name=None)


def test_values_cannot_break_the_yaml() -> None:
    (claim,) = render_template(
        "models-pvc.yaml.j2",
        metadata={"name": "x: y\n- z"},
        access_modes=["ReadWriteOnce"],
        storage_class_name="a'b\"c",
        size="1Gi",
    )
    assert claim["metadata"]["name"] == "x: y\n- z"
    assert claim["spec"]["storageClassName"] == "a'b\"c"
