"""Kubernetes API clients built from a kubeconfig file, never from global configuration.

`kubernetes.config.load_kube_config()` mutates a process-wide default; the sandbox, the
local runtime and the tests each build their own `ApiClient` instead, so nothing leaks
between them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from kubernetes import client, config


def api_client(kubeconfig: Path) -> client.ApiClient:
    """A client for the cluster and user that `kubeconfig` names."""
    api: client.ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig)
    )
    return api


def found(read: Callable[[], object]) -> bool:
    """Whether a read succeeds: False on 404, any other API error propagates."""
    try:
        read()
    except client.ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True
