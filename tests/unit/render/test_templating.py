"""Templates fail loudly on missing values instead of rendering blanks."""

from __future__ import annotations

import jinja2
import pytest

from llmservice.render.templating import render_template, templates


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


def test_templates_are_package_data_of_llmservice() -> None:
    names = sorted(t.name for t in templates().iterdir() if t.name.endswith(".j2"))
    assert "engine-deployment.yaml.j2" in names
    assert "router.yaml.j2" in names


def test_unknown_template_is_not_found() -> None:
    with pytest.raises(jinja2.TemplateNotFound):
        render_template("no-such-template.yaml.j2")
