"""When a Pod can take requests: one definition, for the operator's status and the router.

A Pod serves when it is Running, has an IP, its `Ready` condition is True (its readiness
probe passes) and it is not being deleted: a terminating Pod may still report Ready for a
moment, but new work must not go to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["is_serving"]


def is_serving(pod: Mapping[str, Any]) -> bool:
    status = pod.get("status") or {}
    if status.get("phase") != "Running" or not status.get("podIP"):
        return False
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    return any(
        condition.get("type") == "Ready" and condition.get("status") == "True"
        for condition in status.get("conditions") or ()
    )
