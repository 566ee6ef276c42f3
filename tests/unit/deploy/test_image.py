"""The Dockerfile installs llmservice as the packaging test and the sandbox do.

There is no container engine to build the image with in the tests, so its steps are held
to the ones `sandbox.product` runs (and the wheel test proves): the same build inputs, the
same `pip wheel`, and the same `pip install` of the wheel with no extras.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

from llmservice.sandbox.product import BUILD_INPUTS, PIP_INSTALL, PIP_WHEEL

REPO = Path(__file__).resolve().parents[3]


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = (REPO / "Dockerfile").read_text(encoding="utf-8")
    lines = [ln for ln in text.replace("\\\n", " ").splitlines() if ln.strip()]
    parsed = [ln.strip().split(None, 1) for ln in lines if not ln.lstrip().startswith("#")]
    return [(words[0].upper(), words[1] if len(words) > 1 else "") for words in parsed]


def stages() -> list[list[tuple[str, str]]]:
    """The instructions of each build stage, in order."""
    result: list[list[tuple[str, str]]] = []
    for instruction in instructions():
        if instruction[0] == "FROM":
            result.append([])
        result[-1].append(instruction)
    return result


def runs(stage: list[tuple[str, str]]) -> list[list[str]]:
    """The words of each RUN, without BuildKit's `--mount=` options."""
    words = [shlex.split(args) for name, args in stage if name == "RUN"]
    return [[w for w in run if not w.startswith("--mount=")] for run in words]


def test_the_wheel_is_built_from_the_build_inputs_only() -> None:
    builder = stages()[0]
    copied = set()
    for name, args in builder:
        if name == "COPY":
            *sources, _target = args.split()
            copied |= {source.rstrip("/") for source in sources}
    assert copied == set(BUILD_INPUTS)
    ignore = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
    admitted = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert admitted == set(BUILD_INPUTS)


def test_the_wheel_stage_runs_pip_wheel_as_the_product_does() -> None:
    assert runs(stages()[0]) == [["pip", *PIP_WHEEL, "/wheels", "."]]


def test_the_image_installs_the_wheel_with_no_extras() -> None:
    final = stages()[-1]
    installs = [run for run in runs(final) if run[:2] == ["pip", "install"]]
    assert installs == [["pip", *PIP_INSTALL, "/wheels/llmservice-*.whl"]]
    # Nothing else is installed, and no source reaches the final image.
    assert not [args for name, args in final if name in ("COPY", "ADD")]
    assert not any(re.search(r"\[[a-z,]+\]", " ".join(run)) for run in runs(final))


def test_the_image_runs_the_entry_point_of_the_wheel() -> None:
    final = dict(stages()[-1])
    assert final["ENTRYPOINT"] == '["llmservice"]'
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["scripts"]["llmservice"] == "llmservice.cli:main"
