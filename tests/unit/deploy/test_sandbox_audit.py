"""Counting requests by user from audit log lines shaped as the API server writes them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from llmservice.sandbox import audit

OPERATOR = "system:serviceaccount:llmservice-system:llmservice-operator"


def line(audit_id: str, stage: str, user: str, verb: str, at: str, **ref: str) -> str:
    event: dict[str, Any] = {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Metadata",
        "auditID": audit_id,
        "stage": stage,
        "verb": verb,
        "user": {"username": user},
        "objectRef": ref,
        "requestReceivedTimestamp": at,
    }
    return json.dumps(event)


LINES = [
    # A watch logs ResponseStarted, and ResponseComplete only when it ends: counted once.
    line("w1", "ResponseStarted", OPERATOR, "watch", "2026-11-23T10:00:00.000001Z",
         resource="pods"),
    line("p1", "ResponseComplete", OPERATOR, "patch", "2026-11-23T10:00:10.5Z",
         resource="llmservices", subresource="status"),
    line("g1", "ResponseComplete", "system:kube-scheduler", "get", "2026-11-23T10:00:11Z",
         resource="nodes"),
    '{"auditID": "cut short',
    line("w1", "ResponseComplete", OPERATOR, "watch", "2026-11-23T10:00:00.000001Z",
         resource="pods"),
    line("l1", "ResponseComplete", OPERATOR, "list", "2026-11-23T10:01:00Z", resource="events"),
]  # fmt: skip


def test_each_request_counts_once_and_bad_lines_are_skipped() -> None:
    requests = audit.parse(LINES)
    assert [r.verb for r in requests] == ["watch", "patch", "get", "list"]
    patch = requests[1]
    assert (patch.resource, patch.subresource, patch.is_write) == ("llmservices", "status", True)
    assert not requests[0].is_write


def test_counts_by_verb_for_one_user_in_a_window() -> None:
    requests = audit.parse(LINES)
    start = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    end = datetime(2026, 11, 23, 10, 1, tzinfo=UTC)
    assert audit.by_verb(requests, OPERATOR, start, end) == {"watch": 1, "patch": 1}
    assert audit.by_verb(requests, "nobody", start, end) == {}


def test_reading_from_an_offset_sees_only_what_came_after(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    assert audit.size(log) == 0
    log.write_text("\n".join(LINES[:2]) + "\n", encoding="utf-8")
    offset = audit.size(log)
    with log.open("a", encoding="utf-8") as more:
        more.write(LINES[-1] + "\n")
    (only,) = audit.read(log, offset)
    assert (only.verb, only.resource, only.namespace) == ("list", "events", "")
    assert len(audit.read(log)) == 3
