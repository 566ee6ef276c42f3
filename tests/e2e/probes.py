"""HTTP probes of Pod processes, for bounded polling with `waiting.eventually`."""

from __future__ import annotations

import urllib.error
import urllib.request

PORT = 8000


def answers(url: str) -> bool:
    """Whether GET `url` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback Pod IP
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def refused(url: str) -> bool:
    """Whether nothing answers at `url` any more."""
    try:
        with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - loopback Pod IP
            return False
    except (urllib.error.URLError, OSError):
        return True
