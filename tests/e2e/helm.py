"""helm for the chart tests: the binary `llmservice sandbox build` caches, never one on PATH.

The pinned build makes `helm template` give the same output on every machine. Helm keeps
its cache, configuration and release data under a directory of the test session, so the
tests neither read nor change a developer's helm setup.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmservice.sandbox.versions import default_layout

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "llmservice-operator"
RELEASE = "llmservice-operator"
TIMEOUT_SECONDS = 120


class Helm:
    """Runs the cached helm binary with its state under `home`."""

    def __init__(self, home: Path, kubeconfig: Path | None = None) -> None:
        binary = default_layout().binary("helm")
        if not binary.is_file():
            pytest.fail(f"helm missing ({binary}): run `llmservice sandbox build`", pytrace=False)
        self.binary = binary
        self.kubeconfig = kubeconfig
        self.env = {
            "HOME": str(home),
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data"),
            "PATH": "/usr/bin:/bin",
        }

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """One helm command, whatever its exit code."""
        kube = ["--kubeconfig", str(self.kubeconfig)] if self.kubeconfig else []
        return subprocess.run(
            [str(self.binary), *args, *kube],
            capture_output=True,
            text=True,
            check=False,
            env=self.env,
            timeout=TIMEOUT_SECONDS,
        )

    def __call__(self, *args: str) -> str:
        """One helm command that must succeed; its standard output."""
        result = self.run(*args)
        assert result.returncode == 0, f"helm {' '.join(args)}: {result.stderr}"
        return result.stdout

    def template(
        self, *args: str, release: str = RELEASE, namespace: str = "default"
    ) -> list[dict[str, Any]]:
        """The objects `helm template` renders, CRD included."""
        rendered = ["template", release, str(CHART), "--namespace", namespace, "--include-crds"]
        text = self(*rendered, *args)
        return [d for d in yaml.safe_load_all(text) if d]
