"""Pure checks and rewrites of request and response bodies.

Everything a client can get wrong about a body is decided here, before any replica is
chosen, and reported as a `ClientError` (4xx) naming the offending parameter. Response
bodies are only read for ``usage`` (token counts); prompts are never kept or logged.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from llmservice.router.errors import (
    InvalidRequest,
    ModelNotFound,
    UnsupportedMediaType,
)

__all__ = [
    "API_CHAT_PARAMS",
    "REQUIRED_FIELDS",
    "api_chat_request",
    "check_content_type",
    "check_required",
    "parse_body",
    "resolve_model",
    "usage_from_json",
    "usage_from_sse_tail",
    "with_priority",
]

# Which field each proxied route cannot do without.
REQUIRED_FIELDS: dict[str, str] = {
    "/v1/chat/completions": "messages",
    "/v1/completions": "prompt",
    "/v1/embeddings": "input",
}

_NUMBER = (int, float)
# The sampling parameters /api/chat accepts, and the JSON types each may have.
API_CHAT_PARAMS: dict[str, tuple[type, ...]] = {
    "temperature": _NUMBER,
    "top_p": _NUMBER,
    "top_k": (int,),
    "max_tokens": (int,),
    "stop": (str, list),
    "presence_penalty": _NUMBER,
    "frequency_penalty": _NUMBER,
    "repetition_penalty": _NUMBER,
    "seed": (int,),
    "stream": (bool,),
}


def check_content_type(value: bytes | None) -> None:
    """Accept ``application/json`` (any parameters) or no content type at all."""
    if value is None:
        return
    media = value.split(b";", 1)[0].strip().lower()
    if media != b"application/json" and not (
        media.startswith(b"application/") and media.endswith(b"+json")
    ):
        raise UnsupportedMediaType(
            f"Content-Type {value.decode('latin-1')!r} is not supported; "
            "send the body as application/json."
        )


def parse_body(raw: bytes) -> dict[str, Any]:
    """The JSON object in ``raw``."""
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidRequest(f"The request body is not valid JSON: {error}") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    return body


def with_priority(raw: bytes, body: dict[str, Any], priority: int) -> bytes:
    """``raw`` with the top-level ``priority`` set, re-encoded only when it must be.

    A UTF-8 object without a ``priority`` gets the field spliced in before its closing
    brace (a JSON object ends there), which costs far less than encoding the body again.
    """
    body["priority"] = priority
    head, tail = raw.lstrip()[:1], raw.rstrip()
    if len(body) > 1 and head == b"{" and tail.endswith(b"}") and b'"priority"' not in raw:
        return tail[:-1] + b',"priority":' + str(priority).encode() + b"}"
    return json.dumps(body).encode()


def resolve_model(body: Mapping[str, Any], names: tuple[str, ...], *, required: bool) -> str:
    """The model the request names, checked against the served name and aliases."""
    model = body.get("model")
    if model is None and not required:
        return names[0]
    if not isinstance(model, str) or not model:
        raise InvalidRequest("You must provide a model parameter.", param="model")
    if model not in names:
        raise ModelNotFound(
            f"The model {model!r} does not exist; this service serves "
            + ", ".join(repr(n) for n in names)
            + ".",
            param="model",
        )
    return model


def check_required(route: str, body: Mapping[str, Any]) -> None:
    """Raise when the route's essential field is missing or empty."""
    field = REQUIRED_FIELDS.get(route)
    if field is None:
        return
    value = body.get(field)
    if value is None or value == [] or value == "":
        raise InvalidRequest(f"Missing required parameter: {field!r}.", param=field)
    if field == "messages" and not (
        isinstance(value, list) and all(isinstance(m, dict) for m in value)
    ):
        raise InvalidRequest("'messages' must be a list of message objects.", param=field)


def api_chat_request(body: Mapping[str, Any], served_name: str) -> dict[str, Any]:
    """The /v1/chat/completions body for an /api/chat request.

    /api/chat takes ``messages`` plus the sampling parameters in `API_CHAT_PARAMS`; anything
    else is rejected rather than silently dropped, so a typo does not go unnoticed.
    """
    check_required("/v1/chat/completions", body)
    unknown = sorted(set(body) - set(API_CHAT_PARAMS) - {"messages", "model", "user"})
    if unknown:
        raise InvalidRequest(f"Unknown parameter: {unknown[0]!r}.", param=unknown[0])
    out: dict[str, Any] = {"model": served_name, "messages": body["messages"]}
    for name, types in API_CHAT_PARAMS.items():
        if name not in body or body[name] is None:
            continue
        value = body[name]
        if isinstance(value, bool) and bool not in types:
            raise InvalidRequest(f"{name!r} has the wrong type.", param=name)
        if not isinstance(value, types):
            raise InvalidRequest(f"{name!r} has the wrong type.", param=name)
        out[name] = value
    return out


_PROMPT_TOKENS = re.compile(rb'"prompt_tokens"\s*:\s*(\d+)')
_COMPLETION_TOKENS = re.compile(rb'"completion_tokens"\s*:\s*(\d+)')


def _usage_after(raw: bytes, at: int) -> tuple[int, int]:
    prompt = _PROMPT_TOKENS.search(raw, at)
    completion = _COMPLETION_TOKENS.search(raw, at)
    return (
        int(prompt.group(1)) if prompt else 0,
        int(completion.group(1)) if completion else 0,
    )


def usage_from_json(raw: bytes) -> tuple[int, int]:
    """(prompt, completion) tokens from the ``usage`` object of a JSON body; zeros if none.

    A scan rather than a parse: the body is only read for these two numbers.
    """
    at = raw.rfind(b'"usage"')
    return (0, 0) if at < 0 else _usage_after(raw, at)


def usage_from_sse_tail(tail: bytes) -> tuple[int, int]:
    """(prompt, completion) tokens from the last SSE event that carries a usage object."""
    return usage_from_json(tail)
