"""The conformance suite: what the project assumes about vLLM, checked against vLLM itself.

It needs the real engine installed (`llmservice sandbox build --engine vllm`, which
`make conformance` runs first); without it every test fails, never skips.
"""

from __future__ import annotations

import pytest

from llmservice.sandbox.versions import VllmLayout, default_vllm_layout


@pytest.fixture(scope="session")
def vllm() -> VllmLayout:
    layout = default_vllm_layout()
    if not layout.installed():
        pytest.fail(
            f"vLLM {layout.version} is not installed in {layout.directory}:"
            " run `llmservice sandbox build --engine vllm` (or `make conformance`)"
        )
    return layout
