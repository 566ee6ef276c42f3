"""CORS, so that a browser front end can call the router (off unless origins are configured).

A browser sends a preflight (``OPTIONS`` with ``Origin`` and
``Access-Control-Request-Method``) before a cross-origin request that carries
``Authorization`` or a JSON body. The router answers it itself, 204 and without
authentication (a browser never sends credentials on a preflight): with the allowed
methods, request headers and ``Access-Control-Max-Age`` when the origin is allowed, with no
CORS header otherwise, which the browser takes as a refusal. Every actual response for an
allowed origin, errors, 429s and streams included, carries ``Access-Control-Allow-Origin``
and ``Access-Control-Expose-Headers``: the session and request id headers,
``Retry-After`` and the ``x-ratelimit-*`` headers of a 429, which a script could not read
otherwise. With a list of origins, rather than ``*``, every response says
``Vary: Origin``, since whether it carries CORS headers depends on the request's origin.
No credentials mode: the key travels in ``Authorization``, which CORS allows without it.
The engine's own CORS headers are dropped by the proxy: the policy is the router's.
"""

from __future__ import annotations

from collections.abc import Iterable

from llmservice.router.config import CorsConfig

__all__ = ["ALLOWED_METHODS", "RATE_LIMIT_HEADERS", "Cors"]

ALLOWED_METHODS = ("GET", "POST", "OPTIONS")
# The x-ratelimit-* headers a 429 carries (`llmservice.router.admission.buckets`).
RATE_LIMIT_HEADERS = tuple(
    f"x-ratelimit-{field}-{kind}"
    for kind in ("requests", "tokens")
    for field in ("limit", "remaining", "reset")
)

Headers = list[tuple[bytes, bytes]]


class Cors:
    """The CORS headers of each response, and the answer to a preflight."""

    def __init__(self, config: CorsConfig, session_header: str, request_id_header: str) -> None:
        self.any_origin = "*" in config.allowed_origins
        self.origins = frozenset(origin.encode() for origin in config.allowed_origins)
        exposed = (session_header, request_id_header, "Retry-After", *RATE_LIMIT_HEADERS)
        expose = (b"access-control-expose-headers", ", ".join(dict.fromkeys(exposed)).encode())
        # Responses to a listed origin vary with it; with * they do not.
        self._vary: Headers = [] if self.any_origin else [(b"vary", b"Origin")]
        self._expose = [expose]
        preflight = [
            (b"access-control-allow-methods", ", ".join(ALLOWED_METHODS).encode()),
            (b"access-control-allow-headers", ", ".join(config.allowed_headers).encode()),
        ]
        if config.max_age is not None:
            preflight.append((b"access-control-max-age", str(config.max_age).encode()))
        self._preflight = preflight

    def _allow(self, origin: bytes | None) -> Headers:
        if origin is None:
            return []
        if self.any_origin:
            return [(b"access-control-allow-origin", b"*")]
        if origin in self.origins:
            return [(b"access-control-allow-origin", origin)]
        return []

    def apply(self, method: str, headers: Iterable[tuple[bytes, bytes]], out: Headers) -> bool:
        """Add the CORS headers of the response to `out`; True when this is a preflight.

        A preflight's headers are complete in `out`: answer it 204 with them and stop.
        """
        origin = requested = None
        for name, value in headers:
            if name == b"origin":
                origin = value
            elif name == b"access-control-request-method":
                requested = value
        allow = self._allow(origin)
        out.extend(self._vary)
        preflight = method == "OPTIONS" and origin is not None and requested is not None
        if allow:
            out.extend(allow)
            out.extend(self._preflight if preflight else self._expose)
        return preflight
