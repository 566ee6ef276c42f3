"""Derive, from vLLM's own parser, the short spellings of the flags the operator owns.

    python -m tests.conformance.owned_flags      (`make vllm-flags`)

rewrites `operator/llmservice/api/vllm_flags.py`, which the CRD's rules read (CI needs no
vLLM for that). The conformance suite derives the same again and fails when it differs.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from llmservice.api.spec import OWNED_ENGINE_FLAGS
from llmservice.sandbox.versions import VllmLayout, default_vllm_layout
from tests.conformance.probe import ask

GENERATED = Path(__file__).resolve().parents[2] / "operator/llmservice/api/vllm_flags.py"

HEADER = '''"""How vLLM's parser spells the flags the operator owns: generated, do not edit.

Written by `make vllm-flags` (tests/conformance/owned_flags.py) from the argument parser of
the vLLM release in `llmservice.vllm_release`; the conformance suite fails when the parser
and this file disagree. For each flag in `OWNED_ENGINE_FLAGS`, each of its option strings
(aliases included) with the shortest prefix of it that the parser takes for that flag or
refuses as ambiguous: argparse accepts unambiguous abbreviations, and vLLM stops on
ambiguous ones, so the CRD refuses every prefix from that one on, with '_' for '-' too.
"""

from __future__ import annotations

'''
MIN_LONG_NAME = 2  # "--t" is ambiguous among so many flags that nobody means an owned one


def _normal(spelling: str) -> str:
    """Underscores as dashes, the way vLLM's parser reads a long flag."""
    return "--" + spelling[2:].replace("_", "-") if spelling.startswith("--") else spelling


def derive(layout: VllmLayout) -> dict[str, Any]:
    """What vLLM's parser says about each owned flag (see `vllm_probe.spellings`)."""
    return dict(ask(layout, "spellings", sorted(OWNED_ENGINE_FLAGS)))


def refused_prefixes(answer: dict[str, Any]) -> set[str]:
    """The spellings of one flag the CRD refuses: taken for it, or ambiguous."""
    spellings = {_normal(s) for s in answer["accepted"] + answer["ambiguous"]}
    return {s for s in spellings if not s.startswith("--") or len(s) - 2 >= MIN_LONG_NAME}


def option_spellings(derived: dict[str, Any]) -> dict[str, tuple[tuple[str, str], ...]]:
    """flag -> ((option string, its shortest refused prefix), ...), longest option first."""
    table: dict[str, tuple[tuple[str, str], ...]] = {}
    for flag, answer in sorted(derived["flags"].items()):
        if answer is None:
            raise AssertionError(f"vLLM's parser has no --{flag}: update OWNED_ENGINE_FLAGS")
        refused = refused_prefixes(answer)
        rows = []
        for option in sorted(answer["option_strings"], key=lambda o: (-len(o), o)):
            prefixes = [p for p in refused if option.startswith(p)]
            rows.append((option, min(prefixes, key=len) if prefixes else option))
        table[flag] = tuple(rows)
    return table


def render(derived: dict[str, Any]) -> str:
    rows = option_spellings(derived)
    lines = [
        HEADER,
        "OWNED_FLAG_SPELLINGS: dict[str, tuple[tuple[str, str], ...]] = {\n",
        *(f"    {flag!r}: {spellings!r},\n" for flag, spellings in rows.items()),
        "}\n",
    ]
    return "".join(lines).replace("'", '"')


def main() -> int:
    GENERATED.write_text(render(derive(default_vllm_layout())), encoding="utf-8")
    subprocess.run([sys.executable, "-m", "ruff", "format", "--quiet", str(GENERATED)], check=True)
    print(f"Wrote {GENERATED}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
