"""One JSON line per request.

Fields: time, request id, method, path, model, the API key's name (``client``;
``anonymous`` without keys), session (only a session id the client sent
or was given, never a prompt-derived key), key kind, replica, status, attempts, latency and
time to first byte in milliseconds, prompt and completion tokens, error cause. Never API
keys, never prompt or completion text.
"""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from llmservice.router.proxy import Exchange

__all__ = ["AccessLog"]

_str = json.encoder.encode_basestring_ascii  # the C encoder of JSON strings


def _opt(value: str | None) -> str:
    return "null" if value is None else _str(value)


# Lines held before they are written without waiting for `AccessLog.flush` (about 100 KB).
MAX_PENDING_LINES = 256


class AccessLog:
    """Writes access lines to ``stream`` (standard output when None); ``enabled`` gates it.

    Lines are held here and written together, not one by one: the router's image runs
    with ``PYTHONUNBUFFERED=1``, where every write to standard output is a system call, and
    one per request cost more than the line's formatting. They are written when
    `MAX_PENDING_LINES` are held and whenever the app calls `flush` (about once a second
    and at shutdown), whole lines at a time.
    """

    def __init__(self, stream: TextIO | None = None, *, enabled: bool = True) -> None:
        self.stream = stream
        self.enabled = enabled
        self._second = -1
        self._stamp = ""
        self._pending: list[str] = []

    def write(
        self,
        exchange: Exchange,
        method: str,
        path: str,
        duration: float,
        first_byte: float | None,
    ) -> None:
        if not self.enabled:
            return
        now = int(time.time())
        if now != self._second:  # the timestamp is formatted once a second
            self._second = now
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        session = exchange.session if exchange.key_kind == "session" else None
        ttfb = "null" if first_byte is None else f"{first_byte * 1000:.3f}"
        # Assembled by hand: json.dumps of a dict cost more than the rest of the request's
        # bookkeeping. Every string goes through the JSON string encoder.
        line = (
            f'{{"time":"{self._stamp}","level":"info","msg":"request",'
            f'"request_id":{_str(exchange.request_id)},"method":{_str(method)},'
            f'"path":{_str(path)},"model":{_opt(exchange.model or None)},'
            f'"client":{_str(exchange.client.name)},'
            f'"session":{_opt(session)},"key":{_str(exchange.key_kind)},'
            f'"replica":{_opt(exchange.replica)},"status":{exchange.status},'
            f'"attempts":{exchange.attempts},"latency_ms":{duration * 1000:.3f},'
            f'"ttfb_ms":{ttfb},"prompt_tokens":{exchange.prompt_tokens},'
            f'"completion_tokens":{exchange.completion_tokens},"cause":{_opt(exchange.cause)}}}\n'
        )
        pending = self._pending
        pending.append(line)
        if len(pending) >= MAX_PENDING_LINES:
            self._write_pending()

    def _write_pending(self) -> None:
        if self._pending:
            lines, self._pending = self._pending, []
            (self.stream if self.stream is not None else sys.stdout).write("".join(lines))

    def flush(self) -> None:
        self._write_pending()
        (self.stream if self.stream is not None else sys.stdout).flush()
