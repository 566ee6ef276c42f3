"""When a Pod serves: Running, with an IP, Ready, and not being deleted."""

from __future__ import annotations

from typing import Any

import pytest

from llmservice.pods import is_serving

READY = {"type": "Ready", "status": "True"}


def pod(**changes: Any) -> dict[str, Any]:
    status = {"phase": "Running", "podIP": "10.0.0.1", "conditions": [READY]}
    metadata = {"name": "p"}
    metadata.update(changes.pop("metadata", {}))
    status.update(changes)
    return {"metadata": metadata, "status": status}


def test_a_running_ready_pod_with_an_ip_serves() -> None:
    assert is_serving(pod())


@pytest.mark.parametrize(
    "changes",
    [
        {"phase": "Pending"},
        {"podIP": ""},
        {"conditions": [{"type": "Ready", "status": "False"}]},
        {"conditions": []},
        {"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}},
    ],
)
def test_anything_less_does_not(changes: dict[str, Any]) -> None:
    assert not is_serving(pod(**changes))
