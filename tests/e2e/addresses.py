"""Loopback Pod ranges for test sandboxes.

Each sandbox of a test run gets a /16 of its own, chosen at random, so two runs at once (or
a developer's own sandbox on 127.100.0.0/16) never hand out the same Pod IP.
"""

from __future__ import annotations

import secrets

_taken: set[int] = set()


def fresh_pod_cidr() -> str:
    while True:
        octet = secrets.SystemRandom().randrange(110, 250)
        if octet not in _taken:
            _taken.add(octet)
            return f"127.{octet}.0.0/16"
