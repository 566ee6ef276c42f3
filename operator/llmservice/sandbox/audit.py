"""Counting API requests by user from the sandbox API server's audit log.

The audit policy (see `components.audit_policy`) writes one JSON line per request stage at
Metadata level. A request is counted once, by its `auditID`, at the moment it was received,
so a watch that is still open counts as much as a finished GET.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})


@dataclass(frozen=True)
class Request:
    """One API request as the audit log tells it."""

    user: str
    agent: str
    verb: str
    namespace: str
    resource: str
    subresource: str
    received: datetime

    @property
    def is_write(self) -> bool:
        return self.verb in WRITE_VERBS


def parse(lines: Iterable[str]) -> list[Request]:
    """Each request once, in the order the API server received them; bad lines skipped."""
    seen: set[str] = set()
    found: list[Request] = []
    for line in lines:
        try:
            event = json.loads(line)
            audit_id = event["auditID"]
            received = datetime.fromisoformat(event["requestReceivedTimestamp"])
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by rotation or a read racing a write
        if audit_id in seen:
            continue
        seen.add(audit_id)
        target = event.get("objectRef") or {}
        found.append(
            Request(
                user=str((event.get("user") or {}).get("username", "")),
                agent=str(event.get("userAgent", "")),
                verb=str(event.get("verb", "")),
                namespace=str(target.get("namespace", "")),
                resource=str(target.get("resource", "")),
                subresource=str(target.get("subresource", "")),
                received=received,
            )
        )
    found.sort(key=lambda r: r.received)
    return found


def size(path: Path) -> int:
    """Where the log ends now: pass it to `read` to see only what comes after."""
    return path.stat().st_size if path.exists() else 0


def read(path: Path, offset: int = 0) -> list[Request]:
    """The requests logged from byte `offset` on (a line cut at `offset` is skipped)."""
    with path.open(encoding="utf-8", errors="replace") as log:
        log.seek(offset)
        return parse(log)


def by_verb(requests: Iterable[Request], user: str, start: datetime, end: datetime) -> Counter[str]:
    """How many requests `user` made with each verb in [start, end)."""
    return Counter(r.verb for r in requests if r.user == user and start <= r.received < end)
