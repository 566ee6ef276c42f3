"""Every example renders exactly its golden file."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.golden import EXAMPLES, golden_path, rendered_text


def test_examples_cover_each_feature() -> None:
    names = {example.stem for example in EXAMPLES}
    assert {"minimal", "full", "awq-quantized", "rope-long-context", "pvc-model-cache",
            "ingress-tls", "tensor-parallel", "api-keys"} <= names  # fmt: skip


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.stem for e in EXAMPLES])
def test_rendering_matches_golden_file(example: Path) -> None:
    golden = golden_path(example)
    assert golden.exists(), f"no golden file for {example.name}: run `make golden`"
    assert rendered_text(example) == golden.read_text(encoding="utf-8"), "run `make golden`"
