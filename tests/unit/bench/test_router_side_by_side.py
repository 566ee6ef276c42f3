"""The side-by-side bench: its tables (medians with ranges, paired ratios to the reference) and
its targets."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from bench.router_side_by_side import (
    Figures,
    Target,
    arguments,
    choose_targets,
    split_table,
    table,
)


def test_the_table_gives_medians_ranges_and_paired_ratios_but_none_for_the_reference() -> None:
    reference = Figures(
        values={"plain": [80.0, 100.0, 90.0], "stream": [10.0, 20.0, 30.0], "chat": [1.0]},
        ratios={"plain": [1.0, 1.0, 1.0], "stream": [1.0, 1.0, 1.0], "chat": [1.0]},
    )
    other = Figures(
        values={"plain": [88.0, 95.0, 99.0], "stream": [11.0, 18.0, 36.0], "chat": [1.25]},
        ratios={"plain": [1.1, 0.95, 1.1], "stream": [1.1, 0.9, 1.2], "chat": [1.25]},
    )
    rows = table({"ref": reference, "other": other}, "ref").splitlines()
    assert rows[0].startswith("| target | router CPU us/request | ratio to ref |")
    assert rows[2] == (
        "| ref | 90.0 [80.0-100.0] | - | 20.0 [10.0-30.0] | - | 1.00 [1.00-1.00] | - |"
    )
    assert rows[3] == (
        "| other | 95.0 [88.0-99.0] | 1.100 [0.950-1.100] | 18.0 [11.0-36.0] "
        "| 1.100 [0.900-1.200] | 1.25 [1.25-1.25] | 1.250 [1.250-1.250] |"
    )


def test_the_split_table_gives_the_user_and_kernel_parts_apart() -> None:
    reference = Figures(
        user={"stream": [9.0, 10.0]},
        user_ratios={"stream": [1.0, 1.0]},
        kernel={"stream": [16.0, 15.0]},
        kernel_ratios={"stream": [1.0, 1.0]},
    )
    other = Figures(
        user={"stream": [11.0, 12.0]},
        user_ratios={"stream": [1.2, 1.2]},
        kernel={"stream": [14.0, 16.0]},
        kernel_ratios={"stream": [0.875, 1.0667]},
    )
    rows = split_table({"ref": reference, "other": other}, "ref").splitlines()
    assert rows[0].startswith("| target | user us/request | ratio | kernel us/request | ratio |")
    stream = rows[3].split(" | ")[5:9]
    assert stream == [
        "11.5 [11.0-12.0]",
        "1.200 [1.200-1.200]",
        "15.0 [14.0-16.0]",
        "0.971 [0.875-1.067]",
    ]
    assert rows[2].split(" | ")[5:9] == ["9.5 [9.0-10.0]", "-", "15.5 [15.0-16.0]", "-"]


def test_an_interpreter_target_runs_this_trees_router_by_that_python() -> None:
    targets = choose_targets(
        arguments(["--vllm-router=", "--interpreter", f"optimised={sys.executable}"])
    )
    assert list(targets) == ["llmservice", "llmservice (optimised)"]
    assert targets["llmservice"] == Target()
    tree = Path(__file__).resolve().parents[3]
    assert targets["llmservice (optimised)"] == Target(str(tree), sys.executable)
    assert Path(tree, "operator", "llmservice", "router").is_dir()


@pytest.mark.parametrize("given", [sys.executable, "optimised=/nonexistent/python"])
def test_an_interpreter_needs_a_label_and_a_runnable_python(given: str) -> None:
    with pytest.raises(ValueError, match="LABEL=PYTHON"):
        choose_targets(arguments(["--vllm-router=", "--interpreter", given]))
