"""API errors caused by the object sent, as opposed to the cluster's weather.

A child the API server refuses for its content is refused again on every retry: waiting
cannot fix it, only a spec change can. Two answers say so:

- 422 Invalid: validation failed; `details.causes[].field` names each offending field of
  the child (`spec.template.spec.containers[0].env[3].name`).
- 500 from server-side apply when it cannot even build the typed patch ("failed to create
  typed patch object ... duplicate entries for key [name="HF_HOME"]"): the object breaks
  the merge rules of a list (two env entries with one name). The path is in the message,
  in apply's own notation (`.spec.template.spec.containers[name="vllm"].env`); here it is
  turned into the notation of validation errors by looking the keys up in the object.

Everything else (conflicts, timeouts, throttling, other 5xx) is not the object's fault.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes import client

__all__ = ["Cause", "Refusal", "RefusedChildren", "api_message", "refusal"]

TYPED_PATCH = re.compile(
    r"failed to create typed patch object \([^)]*\): (?P<path>\.\S+?): (?P<message>.+)$", re.S
)
DUPLICATE_KEY = re.compile(r'duplicate entries for key \[(?P<key>\w+)="(?P<value>[^"]*)"\]')
SEGMENT = re.compile(r'\.(?P<field>[^.\[]+)|\[(?P<key>\w+)="(?P<value>[^"]*)"\]|\[(?P<index>\d+)\]')


@dataclass(frozen=True)
class Cause:
    """One field of the child and what the API server said about it ("" when unnamed)."""

    field: str
    message: str


@dataclass(frozen=True)
class Refusal:
    """The API server refused this child for its content."""

    kind: str
    name: str
    causes: tuple[Cause, ...]


def _status_body(error: client.ApiException) -> dict[str, Any]:
    try:
        body = json.loads(error.body or "")
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def api_message(error: client.ApiException) -> str:
    """The API server's own sentence for an error, rather than its raw JSON."""
    message = _status_body(error).get("message")
    return str(message) if message else f"{error.status} {error.reason}"


def _validation_causes(status: Mapping[str, Any]) -> tuple[Cause, ...]:
    causes = [
        Cause(str(cause.get("field") or ""), str(cause.get("message") or ""))
        for cause in (status.get("details") or {}).get("causes") or []
    ]
    return tuple(causes) or (Cause("", str(status.get("message") or "")),)


def _resolve(path: str, obj: Mapping[str, Any]) -> tuple[str, Any]:
    """Apply's `.a[name="x"].b` as validation's `a[0].b`, and the value found there."""
    parts: list[str] = []
    node: Any = obj
    for match in SEGMENT.finditer(path):
        if match["field"] is not None:
            parts.append(("." if parts else "") + match["field"])
            node = node.get(match["field"]) if isinstance(node, Mapping) else None
            continue
        items = node if isinstance(node, list) else []
        if match["index"] is not None:
            index = int(match["index"])
        else:
            found = [
                i for i, item in enumerate(items) if _key(item, match["key"]) == match["value"]
            ]
            index = found[-1] if found else 0
        parts.append(f"[{index}]")
        node = items[index] if index < len(items) else None
    return "".join(parts), node


def _key(item: Any, key: str) -> str | None:
    return str(item.get(key)) if isinstance(item, Mapping) and key in item else None


def _typed_patch_causes(message: str, obj: Mapping[str, Any]) -> tuple[Cause, ...] | None:
    found = TYPED_PATCH.search(message)
    if found is None:
        return None
    field, node = _resolve(found["path"], obj)
    duplicate = DUPLICATE_KEY.search(found["message"])
    if duplicate is not None and isinstance(node, list):
        # The entry that repeats an earlier one: the later of the two (the user's entries
        # come after the operator's own).
        key, value = duplicate["key"], duplicate["value"]
        index = max(i for i, item in enumerate(node) if _key(item, key) == value)
        return (Cause(f"{field}[{index}].{key}", f'Duplicate value: "{value}"'),)
    return (Cause(field, found["message"].strip()),)


def refusal(error: client.ApiException, obj: Mapping[str, Any]) -> Refusal | None:
    """Why the API server refused `obj` for its content, or None if it was not that."""
    status = _status_body(error)
    kind, name = str(obj.get("kind")), str((obj.get("metadata") or {}).get("name"))
    if error.status == 422:
        return Refusal(kind, name, _validation_causes(status))
    if error.status == 500:
        causes = _typed_patch_causes(str(status.get("message") or error.body or ""), obj)
        if causes is not None:
            return Refusal(kind, name, causes)
    return None


Stamp = tuple[str, int, str]  # LLMService uid, its generation, the live child's resourceVersion


class RefusedChildren:
    """Children refused for their content, and why, until the spec or the live child changes.

    The same object would be refused again: sending it on every periodic reconcile would
    only cost a request and a log line each time. A new generation of the LLMService, or a
    change to the live child (deleted, edited), is worth one more try.
    """

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], dict[tuple[str, str], tuple[Stamp, str]]] = {}

    def recall(self, owner: tuple[str, str], child: tuple[str, str], stamp: Stamp) -> str | None:
        found = self._entries.get(owner, {}).get(child)
        return found[1] if found is not None and found[0] == stamp else None

    def remember(
        self, owner: tuple[str, str], child: tuple[str, str], stamp: Stamp, message: str
    ) -> None:
        self._entries.setdefault(owner, {})[child] = (stamp, message)

    def clear(self, owner: tuple[str, str], child: tuple[str, str]) -> None:
        children = self._entries.get(owner)
        if children is not None:
            children.pop(child, None)
            if not children:
                del self._entries[owner]

    def forget(self, owner: tuple[str, str]) -> None:
        self._entries.pop(owner, None)
