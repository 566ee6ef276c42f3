"""Who sent a request, and the admission policy that applies to it.

A `Client` is what authentication yields: the API key's name (shown in logs and metrics,
never the key) and the limits of that key. Without API keys every request comes from one
`ANONYMOUS` client, bounded only by the router's global admission limits.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ANONYMOUS", "DEFAULT_PRIORITY", "Client"]

DEFAULT_PRIORITY = 1


@dataclass(frozen=True, slots=True)
class Client:
    """One API key's identity and limits; None means "no limit of its own"."""

    name: str
    # A weight, not an order: a higher priority gets a larger share of dispatch.
    priority: int = DEFAULT_PRIORITY
    max_queued: int | None = None
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None


ANONYMOUS = Client(name="anonymous")
