"""Log lines of every long-running command: one JSON object per line, or plain text locally.

Records about one object carry it as `k8s_ref` (a mapping with `namespace` and `name`):
kopf's per-object loggers set it on their own records, and `about()` builds the same
`extra` for ours, so a log search by namespace and name finds every line about an object,
whichever library wrote it. Messages are written as given: nothing here reads Secrets, and
no caller logs a key.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import Any, Literal

__all__ = ["FORMATS", "JsonFormatter", "TextFormatter", "about", "configure"]

LogFormat = Literal["json", "text"]
FORMATS: tuple[LogFormat, ...] = ("json", "text")
REF = "k8s_ref"  # the attribute kopf's object loggers use too


def about(namespace: str, name: str) -> dict[str, Any]:
    """`extra` for a record about one object: `log.info(..., extra=about(ns, name))`."""
    return {REF: {"namespace": namespace, "name": name}}


def _reference(record: logging.LogRecord) -> Mapping[str, Any] | None:
    ref = getattr(record, REF, None)
    return ref if isinstance(ref, Mapping) else None


class JsonFormatter(logging.Formatter):
    """Log records as one JSON object per line, like the access log."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        ref = _reference(record)
        if ref is not None:
            for key in ("namespace", "name"):
                if ref.get(key):
                    entry[key] = ref[key]
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class TextFormatter(logging.Formatter):
    """Plain lines for a terminal; an object's records start with `[namespace/name]`."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        ref = _reference(record)
        if ref is not None and ref.get("name"):
            where = "/".join(str(ref[k]) for k in ("namespace", "name") if ref.get(k))
            record.message = f"[{where}] {record.message}"
        return super().formatMessage(record)


def configure(level: int | str, log_format: LogFormat = "json") -> None:
    """One handler on the root logger, so every library's records share the format."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    logging.basicConfig(level=level, handlers=[handler], force=True)
