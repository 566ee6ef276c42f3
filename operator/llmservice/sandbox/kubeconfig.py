"""Kubeconfig files: the admin one for people and the control plane, and per-Pod ones.

Paths are absolute, so kubectl, kopf and the kubernetes client all read the same file
through `KUBECONFIG` from any working directory. A Pod's kubeconfig carries a bound
service-account token instead of a certificate, so the process started for that Pod has
exactly the RBAC rights of the Pod's ServiceAccount.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

CONTEXT = "llmservice-sandbox"


def _document(server: str, ca: Path, user: dict[str, str], namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": CONTEXT,
                "cluster": {"server": server, "certificate-authority": str(ca.resolve())},
            }
        ],
        "users": [{"name": CONTEXT, "user": user}],
        "contexts": [
            {
                "name": CONTEXT,
                "context": {"cluster": CONTEXT, "user": CONTEXT, "namespace": namespace},
            }
        ],
        "current-context": CONTEXT,
    }


def _write(path: Path, document: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    path.chmod(0o600)
    return path


def write_admin(path: Path, server: str, ca: Path, cert: Path, key: Path) -> Path:
    user = {"client-certificate": str(cert.resolve()), "client-key": str(key.resolve())}
    return _write(path, _document(server, ca, user, "default"))


def write_token(path: Path, server: str, ca: Path, token: str, namespace: str) -> Path:
    return _write(path, _document(server, ca, {"token": token}, namespace))
