"""One JSON line per request.

Fields: time, request id, method, path, model, the API key's name (``client``;
``anonymous`` without keys), session (only a session id the client sent
or was given, never a prompt-derived key), key kind, replica, status, attempts, latency and
time to first byte in milliseconds, prompt and completion tokens, error cause. Never API
keys, never prompt or completion text.
"""

from __future__ import annotations

import select
import sys
import time
from typing import TYPE_CHECKING, TextIO

import msgspec

if TYPE_CHECKING:
    from llmservice.router.proxy import Exchange

__all__ = ["AccessLog"]


class _Line(msgspec.Struct, gc=False):
    """One access line, its fields in the order they are written."""

    time: str
    level: str
    msg: str
    request_id: str
    method: str
    path: str
    model: str | None
    client: str
    session: str | None
    key: str
    replica: str | None
    status: int
    attempts: int
    latency_ms: float
    ttfb_ms: float | None
    prompt_tokens: int
    completion_tokens: int
    cause: str | None


_ENCODER = msgspec.json.Encoder()

# Lines held before they are written without waiting for `AccessLog.flush` (about 100 KB).
MAX_PENDING_LINES = 256


class AccessLog:
    """Writes access lines to ``stream`` (standard output when None); ``enabled`` gates it.

    Lines are held here and written together, not one by one: the router's image runs
    with ``PYTHONUNBUFFERED=1``, where every write to standard output is a system call, and
    one per request cost more than the line's formatting. They are written when
    `MAX_PENDING_LINES` are held and whenever the app calls `flush` (about once a second
    and at shutdown), whole lines at a time. A request only records its fields (a `_Line`);
    they are encoded as JSON when written, all the held lines in one call of msgspec's
    encoder, which costs a third of formatting each line in Python as it came.
    """

    def __init__(self, stream: TextIO | None = None, *, enabled: bool = True) -> None:
        self.stream = stream
        self.enabled = enabled
        self._second = -1
        self._stamp = ""
        self._pending: list[_Line] = []

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
        pending = self._pending
        pending.append(
            _Line(
                self._stamp,
                "info",
                "request",
                exchange.request_id,
                method,
                path,
                exchange.model or None,
                exchange.client.name,
                exchange.session if exchange.key_kind == "session" else None,
                exchange.key_kind,
                exchange.replica,
                exchange.status,
                exchange.attempts,
                round(duration * 1000, 3),
                None if first_byte is None else round(first_byte * 1000, 3),
                exchange.prompt_tokens,
                exchange.completion_tokens,
                exchange.cause,
            )
        )
        if len(pending) >= MAX_PENDING_LINES:
            self._write_pending()

    def _write_pending(self) -> None:
        if self._pending:
            lines, self._pending = self._pending, []
            data = _ENCODER.encode_lines(lines)  # UTF-8, whatever the stream's encoding
            stream = self.stream if self.stream is not None else sys.stdout
            binary = getattr(stream, "buffer", None)
            if binary is None:  # a text-only stream (a test's StringIO)
                stream.write(data.decode())
                return
            stream.flush()  # what was written as text goes first
            view = memoryview(data)
            while view:  # a raw file (unbuffered standard output) may take part of it
                written = binary.write(view)
                if written is None:  # a full non-blocking one: wait, as a blocking one would
                    select.select([], [binary], [])
                    continue
                view = view[written:]

    def flush(self) -> None:
        self._write_pending()
        (self.stream if self.stream is not None else sys.stdout).flush()
