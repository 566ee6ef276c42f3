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


class AccessLog:
    """Writes access lines to ``stream`` (standard output when None); ``enabled`` gates it.

    Lines are not flushed one by one (a system call per request); the app calls `flush`
    about once a second and at shutdown.
    """

    def __init__(self, stream: TextIO | None = None, *, enabled: bool = True) -> None:
        self.stream = stream
        self.enabled = enabled
        self._second = -1
        self._stamp = ""

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
        (self.stream if self.stream is not None else sys.stdout).write(line)

    def flush(self) -> None:
        (self.stream if self.stream is not None else sys.stdout).flush()
