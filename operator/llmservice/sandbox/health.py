"""Bounded waits on health endpoints, that fail fast when the process behind them dies.

Every wait polls a condition with a deadline; none sleeps blindly. When the process being
waited on exits, the wait stops at once and its log is read for the cause (a port in use is
the common one), so the user gets one line instead of a timeout.
"""

from __future__ import annotations

import re
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from llmservice.sandbox.errors import SandboxError
from llmservice.sandbox.processes import ProcessRecord, log_tail

POLL_SECONDS = 0.25
_IN_USE = re.compile(r"(?:127\.0\.0\.1|\[::\]|0\.0\.0\.0)?:?(\d+): bind: address already in use")


def failure_of(record: ProcessRecord) -> SandboxError:
    """The one-line reason a component exited, read from the end of its log."""
    tail = log_tail(record.log)
    for line in reversed(tail):
        match = _IN_USE.search(line)
        if match:
            return SandboxError(
                f"{record.name} could not listen: port {match[1]} is already in use",
                "stop whatever listens there (`ss -ltnp`) and run `llmservice sandbox up` again",
            )
    errors = [ln for ln in tail if re.search(r"\b(E\d{4}|error|fatal|panic)", ln, re.IGNORECASE)]
    last = (errors or tail or ["no output"])[-1].strip()
    return SandboxError(f"{record.name} failed to start: {last[:240]}", f"see {record.log}")


def wait_until(
    condition: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    watch: ProcessRecord | None = None,
) -> None:
    """Poll `condition` until it holds; raise a SandboxError on timeout or process exit."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return
        if watch is not None and not watch.alive():
            raise failure_of(watch)
        if time.monotonic() > deadline:
            log = f"; see {watch.log}" if watch else ""
            raise SandboxError(f"timed out after {timeout:.0f}s waiting for {what}{log}")
        time.sleep(POLL_SECONDS)


def http_ok(url: str, context: ssl.SSLContext | None = None, timeout: float = 2.0) -> bool:
    """Whether GET `url` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:  # noqa: S310
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def client_context(ca: Path, cert: Path, key: Path) -> ssl.SSLContext:
    """TLS to the API server: verify it against the sandbox CA, present the admin cert."""
    context = ssl.create_default_context(cafile=str(ca))
    context.load_cert_chain(str(cert), str(key))
    return context


def self_signed_context() -> ssl.SSLContext:
    """The controller-manager and scheduler serve self-signed certs on loopback."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context
