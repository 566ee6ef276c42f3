"""`llmservice operator` without credentials says so in one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_missing_kubeconfig_is_one_clear_line(tmp_path: Path) -> None:
    env = {**os.environ, "KUBECONFIG": str(tmp_path / "absent")}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    result = subprocess.run(
        [sys.executable, "-m", "llmservice.cli", "operator", "--liveness-port", "0"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "no cluster credentials" in result.stderr
    assert "KUBECONFIG" in result.stderr
    assert "Traceback" not in result.stderr
