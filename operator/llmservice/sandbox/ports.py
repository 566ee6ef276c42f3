"""Loopback ports: picking free ones, and naming the one that is taken.

Every component gets a port the kernel reports free at start; a port the user asked for
explicitly is checked first, so "port in use" is one clear line instead of a component's
log full of bind errors.
"""

from __future__ import annotations

import errno
import socket

from llmservice.sandbox.errors import SandboxError

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """A port nothing listens on right now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def require_free(port: int, what: str, host: str = LOOPBACK) -> int:
    """Return `port` if it can be bound, else a SandboxError naming the port and the fix."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise SandboxError(
                    f"port {port} on {host} for {what} is already in use",
                    "stop whatever listens there (`ss -ltnp`) or pick another port",
                ) from None
            raise
    return port


def is_listening(port: int, host: str = LOOPBACK, timeout: float = 0.5) -> bool:
    """Whether something accepts connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
