"""The objects `kubectl apply -k deploy/` installs, loaded once for the deploy tests.

With kubectl on the PATH they are what `kubectl kustomize deploy/` renders; without it, the
files the kustomization lists (it only lists resources, so both give the same objects, which
`test_kustomize_renders_the_listed_files` checks where kubectl exists).
"""

from __future__ import annotations

import copy
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[3]
DEPLOY = REPO / "deploy"


def listed_objects() -> list[dict[str, Any]]:
    """The documents of every file in the kustomization's `resources`, in order."""
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text(encoding="utf-8"))
    objects: list[dict[str, Any]] = []
    for resource in kustomization["resources"]:
        text = (DEPLOY / resource).read_text(encoding="utf-8")
        objects += [d for d in yaml.safe_load_all(text) if d]
    return objects


def kustomized_objects() -> list[dict[str, Any]] | None:
    """`kubectl kustomize deploy/`, or None without kubectl."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return None
    result = subprocess.run(
        [kubectl, "kustomize", str(DEPLOY)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return [d for d in yaml.safe_load_all(result.stdout) if d]


@cache
def _objects() -> tuple[dict[str, Any], ...]:
    return tuple(kustomized_objects() or listed_objects())


def deploy_objects() -> list[dict[str, Any]]:
    """A fresh copy, so no test sees another's changes."""
    return copy.deepcopy(list(_objects()))


def one(kind: str) -> dict[str, Any]:
    """The only object of `kind`."""
    found = [o for o in deploy_objects() if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]
