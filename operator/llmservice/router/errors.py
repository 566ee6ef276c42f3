"""The router's one exception tree, and how each error looks to an OpenAI client.

Every failure a client can see is a `RouterError`; each class fixes the HTTP status, the
OpenAI error ``type`` and ``code``, and the metrics ``cause`` label. `error_body` renders
the OpenAI shape (``{"error": {"message", "type", "param", "code"}}``) and adds the request
id, so a user can quote it when asking for help::

    RouterError
    ├── ClientError                 4xx: the request is wrong, retrying it will not help
    │   ├── InvalidRequest          400 malformed JSON (or not UTF-8, or nested too deeply),
    │   │                           missing field, a field the router reads of the wrong type
    │   ├── Unauthorized            401 a missing or unknown API key
    │   ├── NotFound                404 unknown path
    │   ├── ModelNotFound           404 a model that is neither the served name nor an alias
    │   ├── MethodNotAllowed        405
    │   ├── PayloadTooLarge         413 body over the configured limit, or over a million values
    │   ├── UnsupportedMediaType    415 a body that is not application/json
    │   └── TooManyRequests         429 refused by admission; ``code`` says which limit:
    │       ├── RequestRateLimited      the key's requests per minute
    │       ├── TokenRateLimited        the key's tokens per minute
    │       ├── GlobalRateLimited       the router's requests per minute
    │       ├── KeyQueueFull            the key already has its maxQueued waiting
    │       ├── QueueFull               the router's queue is full
    │       └── QueueTimeout            waited the queue timeout without a free slot
    └── ServiceError                5xx: the router or the engine could not serve it
        ├── NoReadyReplica          503 nothing to route to (or the router is draining)
        │   └── ColdStartTimeout        held for a replica (scaling from zero) in vain
        ├── RouterBusy              503 the bodies of requests in flight fill the router's budget
        ├── UpstreamConnectError    502 every attempt failed before the first byte
        ├── UpstreamTimeout         504 connect, first-byte, idle or total timeout
        └── UpstreamProtocolError   502 the engine broke the connection mid-response

A 429 carries ``Retry-After`` (whole seconds, at least 1: when the limit is expected to let
the request through) and the ``x-ratelimit-*`` headers of the limits that apply, in
`RouterError.headers`; the app sends them with the error body.

Errors raised after the response headers went out cannot change the status; the proxy then
ends the stream and records the cause in metrics and the access log.
"""

from __future__ import annotations

import json
import math
from typing import ClassVar

__all__ = [
    "ClientError",
    "ColdStartTimeout",
    "GlobalRateLimited",
    "InvalidRequest",
    "KeyQueueFull",
    "MethodNotAllowed",
    "ModelNotFound",
    "NoReadyReplica",
    "NotFound",
    "PayloadTooLarge",
    "QueueFull",
    "QueueTimeout",
    "RequestRateLimited",
    "RouterBusy",
    "RouterError",
    "ServiceError",
    "TokenRateLimited",
    "TooManyRequests",
    "Unauthorized",
    "UnsupportedMediaType",
    "UpstreamConnectError",
    "UpstreamProtocolError",
    "UpstreamTimeout",
    "error_body",
]


class RouterError(Exception):
    """Base of every error the router reports to a client."""

    status: ClassVar[int] = 500
    error_type: ClassVar[str] = "server_error"
    code: ClassVar[str | None] = None
    cause: ClassVar[str] = "internal"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        headers: tuple[tuple[bytes, bytes], ...] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.headers = headers


class ClientError(RouterError):
    """The request itself is wrong (4xx)."""

    status = 400
    error_type = "invalid_request_error"
    cause = "bad_request"


class InvalidRequest(ClientError):
    code = "invalid_request"


class Unauthorized(ClientError):
    status = 401
    error_type = "authentication_error"
    code = "invalid_api_key"
    cause = "unauthorized"


class NotFound(ClientError):
    status = 404
    code = "not_found"


class ModelNotFound(ClientError):
    status = 404
    code = "model_not_found"


class MethodNotAllowed(ClientError):
    status = 405
    code = "method_not_allowed"


class PayloadTooLarge(ClientError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(ClientError):
    status = 415
    code = "unsupported_media_type"


class TooManyRequests(ClientError):
    """Admission refused the request; retrying after ``Retry-After`` may succeed."""

    status = 429
    # The OpenAI API's 429s say "requests" or "tokens" here: which kind of limit was hit.
    error_type = "requests"
    code = "rate_limit_exceeded"
    cause = "rate_limited"

    def __init__(
        self,
        message: str,
        *,
        retry_after: float,
        headers: tuple[tuple[bytes, bytes], ...] = (),
    ) -> None:
        self.retry_after = max(1, math.ceil(retry_after))
        # Whether ``headers`` already holds the x-ratelimit-* ones (a rate-limit refusal).
        self.headers_included = bool(headers)
        super().__init__(
            message, headers=((b"retry-after", str(self.retry_after).encode()), *headers)
        )


class RequestRateLimited(TooManyRequests):
    code = cause = "rate_limit_requests"


class TokenRateLimited(TooManyRequests):
    error_type = "tokens"
    code = cause = "rate_limit_tokens"


class GlobalRateLimited(TooManyRequests):
    code = cause = "global_rate_limit"


class KeyQueueFull(TooManyRequests):
    code = cause = "key_queue_full"


class QueueFull(TooManyRequests):
    code = cause = "queue_full"


class QueueTimeout(TooManyRequests):
    code = cause = "queue_timeout"


class ServiceError(RouterError):
    """The router or the engine could not serve a valid request (5xx)."""

    status = 503
    error_type = "server_error"


class NoReadyReplica(ServiceError):
    status = 503
    code = "no_ready_replica"
    cause = "no_ready_replica"


class ColdStartTimeout(NoReadyReplica):
    """No replica became ready while the request was held; ``Retry-After`` says when to
    try again (an engine that is starting may need longer than the hold)."""

    code = "cold_start_timeout"
    cause = "cold_start_timeout"

    def __init__(self, message: str, *, retry_after: float) -> None:
        self.retry_after = max(1, math.ceil(retry_after))
        super().__init__(message, headers=((b"retry-after", str(self.retry_after).encode()),))


class RouterBusy(ServiceError):
    """The request bodies held at once would exceed the router's budget; try again soon."""

    code = "router_busy"
    cause = "router_busy"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers=((b"retry-after", b"1"),))


class UpstreamConnectError(ServiceError):
    status = 502
    code = "upstream_connect_error"
    cause = "upstream_connect"


class UpstreamTimeout(ServiceError):
    status = 504
    code = "upstream_timeout"
    cause = "upstream_timeout"


class UpstreamProtocolError(ServiceError):
    status = 502
    code = "upstream_protocol_error"
    cause = "upstream_protocol"


def error_body(error: RouterError, request_id: str) -> bytes:
    """The OpenAI-style JSON body for ``error``, carrying ``request_id``."""
    payload = {
        "error": {
            "message": error.message,
            "type": error.error_type,
            "param": error.param,
            "code": error.code,
            "request_id": request_id,
        }
    }
    return json.dumps(payload).encode()
