"""Jinja2 rendering of the templates in `templates/`, parsed to dicts at once.

`StrictUndefined` turns a misspelt variable into an error instead of an empty string, and
every value is written with `tojson` (JSON is YAML), so no value can break the YAML around
it. Nothing downstream ever sees YAML text.
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import yaml

TEMPLATES_ENV = "LLMSERVICE_TEMPLATES"
# libyaml's safe loader when PyYAML was built with it (several times faster), else Python's.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def templates_dir() -> Path:
    """`templates/` of the source tree, or the directory named by $LLMSERVICE_TEMPLATES."""
    configured = os.environ.get(TEMPLATES_ENV)
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[3] / "templates"


def _tojson(value: Any) -> str:
    """JSON for one value; an undefined value is an error, never `null` or a blank."""
    if isinstance(value, jinja2.Undefined):
        value._fail_with_undefined_error()
    return json.dumps(value, sort_keys=True)


@cache
def _environment(directory: Path) -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(directory),
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
    text = _environment(templates_dir()).get_template(name).render(**values)
    return [document for document in yaml.load_all(text, Loader=_LOADER) if document]
