"""Is a live object already what we would apply? Decides whether to write at all.

A converged LLMService must cost no write, so before each server-side apply the desired
object is compared with the live one: every field we set must be present with the same
value. Fields set by others (defaults, users' extra labels, status) are ignored, which is
also what server-side apply itself does with fields another manager owns.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from kubernetes.utils import parse_quantity


def _quantity(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        parsed: Decimal = parse_quantity(value)  # type: ignore[no-untyped-call]
    except (ValueError, TypeError, InvalidOperation):
        return None
    return parsed


def _same_scalar(desired: Any, live: Any) -> bool:
    if desired == live:
        return True
    # The API returns quantities in canonical form and int-or-string values as strings:
    # 1 == "1" and "17179869184" == "16Gi". Only values that both parse as quantities.
    if isinstance(live, str) and not isinstance(desired, bool):
        desired_quantity, live_quantity = _quantity(desired), _quantity(live)
        return desired_quantity is not None and desired_quantity == live_quantity
    return False


def is_subset(desired: Any, live: Any) -> bool:
    """Whether every field of `desired` appears in `live` with an equal value."""
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return False
        return all(key in live and is_subset(value, live[key]) for key, value in desired.items())
    if isinstance(desired, list):
        if not isinstance(live, list) or len(desired) != len(live):
            return False
        return all(is_subset(d, v) for d, v in zip(desired, live, strict=True))
    return _same_scalar(desired, live)
