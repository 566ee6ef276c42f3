"""Jinja2 rendering of the package's `templates/`, parsed to dicts at once.

The templates are package data, read through `importlib.resources`: an installed wheel
renders exactly as a source checkout does, with nothing to configure.

`StrictUndefined` turns a misspelt variable into an error instead of an empty string, and
every value is written with `tojson` (JSON is YAML), so no value can break the YAML around
it. Nothing downstream ever sees YAML text.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Any

import jinja2
import yaml

# libyaml's safe loader when PyYAML was built with it (several times faster), else Python's.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def templates() -> Traversable:
    """The `templates/` directory inside the installed `llmservice` package."""
    return files("llmservice") / "templates"


def _load(name: str) -> tuple[str, str, Callable[[], bool]] | None:
    """A template's source for Jinja2, or None (TemplateNotFound) when there is none."""
    resource = templates() / name
    if not resource.is_file():
        return None
    # Package data never changes while the process runs: a loaded template stays valid.
    return resource.read_text(encoding="utf-8"), str(resource), lambda: True


def _tojson(value: Any) -> str:
    """JSON for one value; an undefined value is an error, never `null` or a blank."""
    if isinstance(value, jinja2.Undefined):
        value._fail_with_undefined_error()
    return json.dumps(value, sort_keys=True)


@cache
def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FunctionLoader(_load),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # noqa: S701 - the output is YAML, not HTML
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["tojson"] = _tojson
    return environment


def render_template(name: str, **values: Any) -> list[dict[str, Any]]:
    """Render one template and return the objects it defines (empty documents dropped)."""
    text = _environment().get_template(name).render(**values)
    return [document for document in yaml.load_all(text, Loader=_LOADER) if document]
