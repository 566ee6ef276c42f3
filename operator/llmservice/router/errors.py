"""The router's one exception tree, and how each error looks to an OpenAI client.

Every failure a client can see is a `RouterError`; each class fixes the HTTP status, the
OpenAI error ``type`` and ``code``, and the metrics ``cause`` label. `error_body` renders
the OpenAI shape (``{"error": {"message", "type", "param", "code"}}``) and adds the request
id, so a user can quote it when asking for help::

    RouterError
    ├── ClientError                 4xx: the request is wrong, retrying it will not help
    │   ├── InvalidRequest          400 malformed JSON, missing field, wrong type
    │   ├── Unauthorized            401 a missing or unknown API key
    │   ├── NotFound                404 unknown path
    │   ├── ModelNotFound           404 a model that is neither the served name nor an alias
    │   ├── MethodNotAllowed        405
    │   ├── PayloadTooLarge         413 body over the configured limit
    │   └── UnsupportedMediaType    415 a body that is not application/json
    └── ServiceError                5xx: the router or the engine could not serve it
        ├── NoReadyReplica          503 nothing to route to (or the router is draining)
        ├── UpstreamConnectError    502 every attempt failed before the first byte
        ├── UpstreamTimeout         504 connect, first-byte, idle or total timeout
        └── UpstreamProtocolError   502 the engine broke the connection mid-response

Errors raised after the response headers went out cannot change the status; the proxy then
ends the stream and records the cause in metrics and the access log.
"""

from __future__ import annotations

import json
from typing import ClassVar

__all__ = [
    "ClientError",
    "InvalidRequest",
    "MethodNotAllowed",
    "ModelNotFound",
    "NoReadyReplica",
    "NotFound",
    "PayloadTooLarge",
    "RouterError",
    "ServiceError",
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

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


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


class ServiceError(RouterError):
    """The router or the engine could not serve a valid request (5xx)."""

    status = 503
    error_type = "server_error"


class NoReadyReplica(ServiceError):
    status = 503
    code = "no_ready_replica"
    cause = "no_ready_replica"


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
