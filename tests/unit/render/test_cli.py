"""`llmservice render` and `llmservice crd` as a user runs them: real processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llmservice.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_render_prints_every_child() -> None:
    result = run("render", str(REPO / "examples" / "full.yaml"))
    assert result.returncode == 0, result.stderr
    kinds = [obj["kind"] for obj in yaml.safe_load_all(result.stdout)]
    assert kinds.count("Deployment") == 2
    for kind in ("PersistentVolumeClaim", "Service", "ServiceAccount", "Role", "RoleBinding",
                 "Ingress", "ServiceMonitor", "PodDisruptionBudget", "NetworkPolicy"):  # fmt: skip
        assert kind in kinds


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("apiVersion: serving.llmservice.dev/v1alpha1\nkind: LLMService\nmetadata: {name: x}\n"
         "spec: {model: {name: m}, engine: {gpus: 0, typo: 1}}\n",
         ["spec.engine.gpus:", "spec.engine.typo: unknown field"]),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n", ["kind: must be LLMService"]),
        ("spec: [unclosed\n", ["is not valid YAML"]),
        ("", ["holds no documents"]),
    ],
    ids=["invalid-fields", "other-kind", "broken-yaml", "empty"],
)  # fmt: skip
def test_render_reports_bad_input_without_traceback(text: str, expected: list[str]) -> None:
    result = run("render", "-", stdin=text)
    assert result.returncode == 1
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    for fragment in expected:
        assert fragment in result.stderr


def test_render_reports_a_missing_file() -> None:
    result = run("render", "/nonexistent/llms.yaml")
    assert result.returncode == 1
    assert "cannot read /nonexistent/llms.yaml" in result.stderr
    assert "Traceback" not in result.stderr


def test_crd_check_detects_a_stale_file(tmp_path: Path) -> None:
    stale = tmp_path / "crd.yaml"
    stale.write_text("old\n", encoding="utf-8")
    assert run("crd", "--output", str(stale), "--check").returncode == 1
    assert run("crd", "--output", str(stale)).returncode == 0
    assert run("crd", "--output", str(stale), "--check").returncode == 0


def test_unknown_subcommand_is_an_error() -> None:
    result = run("frobnicate")
    assert result.returncode == 2
    assert "unknown command 'frobnicate'" in result.stderr
