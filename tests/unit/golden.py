"""Golden files: the rendered children of every example, reviewed in diffs.

Regenerate with `make golden` (python -m tests.unit.golden) after an intended change.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from llmservice.api.validation import parse_llmservice
from llmservice.render import render_all

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
GOLDEN_DIR = Path(__file__).parent / "golden"


def rendered_text(example: Path) -> str:
    documents = [doc for doc in yaml.safe_load_all(example.read_text(encoding="utf-8")) if doc]
    objects = [obj for doc in documents for obj in render_all(parse_llmservice(doc))]
    return yaml.safe_dump_all(objects, sort_keys=True, explicit_start=True, width=100)


def golden_path(example: Path) -> Path:
    return GOLDEN_DIR / example.name


def main() -> None:
    GOLDEN_DIR.mkdir(exist_ok=True)
    for example in EXAMPLES:
        golden_path(example).write_text(rendered_text(example), encoding="utf-8")
        print(f"Wrote {golden_path(example).relative_to(REPO)}")


if __name__ == "__main__":
    main()
