"""The OpenAI wire format as vLLM speaks it: request validation, bodies, chunks, errors.

Errors use vLLM's envelope, `{"error": {"message", "type", "param", "code"}}`, with `code`
the HTTP status as an integer and `type` vLLM's (`BadRequestError`, `NotFoundError`).
Bodies and chunks carry the fields vLLM sends, so the `openai` SDK parses them unchanged.
Chunks omit `usage` unless it is the final usage chunk, as vLLM does. The conformance suite
(tests/conformance) compares these shapes with the real engine's, key by key.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Any, Literal

from llmservice.sim.config import SimConfig
from llmservice.sim.engine import Sequence
from llmservice.sim.tokenizer import render_chat, tokenize
from llmservice.vllm_release import VLLM_VERSION

__all__ = ["APIError", "ChunkWriter", "ParsedRequest", "final_body", "parse_request"]

Kind = Literal["chat", "completion"]
# vLLM's is "vllm-<version>-<hash>"; the simulator's names the release it imitates.
SYSTEM_FINGERPRINT = f"vllm-{VLLM_VERSION}-sim"


class APIError(Exception):
    """An error response: HTTP status plus vLLM's error body."""

    def __init__(
        self, status: int, message: str, type_: str = "BadRequestError", param: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.param = param

    def body(self) -> bytes:
        error = {"message": self.message, "type": self.type, "param": self.param}
        return json.dumps({"error": {**error, "code": self.status}}).encode()


def bad_request(message: str, param: str | None = None) -> APIError:
    return APIError(400, message, "BadRequestError", param)


@dataclass(frozen=True)
class ParsedRequest:
    kind: Kind
    prompt_ids: list[int]
    max_tokens: int | None
    stop: tuple[str, ...]
    stream: bool
    include_usage: bool
    continuous_usage: bool
    priority: int = 0


def _optional_int(body: dict[str, Any], name: str, minimum: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request(f"{name} must be an integer", name)
    if value < minimum:
        raise bad_request(f"{name} must be at least {minimum}, got {value}.", name)
    return value


def _check_number(body: dict[str, Any], name: str, low: float, high: float) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad_request(f"{name} must be a number", name)
    if not low <= value <= high:
        raise bad_request(f"{name} must be in [{low}, {high}], got {value}.", name)


def _stop(body: dict[str, Any]) -> tuple[str, ...]:
    stop = body.get("stop")
    if stop is None:
        return ()
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise bad_request("stop must be a string or a list of strings", "stop")
    return tuple(s for s in stop if s)


def _completion_prompt(prompt: Any) -> list[int]:
    """A completions prompt: text, token ids, or a batch of exactly one of those."""
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str | list):
        prompt = prompt[0]
    if isinstance(prompt, str):
        return tokenize(prompt)
    if isinstance(prompt, list) and all(
        isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in prompt
    ):
        return list(prompt)
    raise bad_request(
        "prompt must be a string, a list of token ids, or a batch of one of those", "prompt"
    )


def _prompt_ids(kind: Kind, body: dict[str, Any]) -> list[int]:
    if kind == "chat":
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise bad_request("messages must be a non-empty list", "messages")
        try:
            return tokenize(render_chat(messages))
        except ValueError as exc:
            raise bad_request(str(exc), "messages") from None
    if "prompt" not in body:
        raise bad_request("prompt is required", "prompt")
    return _completion_prompt(body["prompt"])


def parse_request(kind: Kind, raw: bytes, config: SimConfig) -> ParsedRequest:
    """Validate a completions or chat request as vLLM would; raises `APIError`."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(f"JSON decode error: {exc}") from None
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    model = body.get("model")
    if model is not None and model not in config.model_names:
        raise APIError(404, f"The model `{model}` does not exist.", "NotFoundError", "model")
    n = _optional_int(body, "n", 1)
    if n not in (None, 1):
        raise bad_request("The simulator supports only n=1.", "n")
    _check_number(body, "temperature", 0.0, 2.0)
    _check_number(body, "top_p", 1e-9, 1.0)
    max_tokens = _optional_int(body, "max_tokens", 1)
    if kind == "chat":
        max_tokens = _optional_int(body, "max_completion_tokens", 1) or max_tokens
    stream = body.get("stream") or False
    if not isinstance(stream, bool):
        raise bad_request("stream must be a boolean", "stream")
    options = body.get("stream_options")
    if options is not None and not stream:
        raise bad_request(
            "Stream options can only be defined when `stream=True`.", "stream_options"
        )
    if options is not None and not isinstance(options, dict):
        raise bad_request("stream_options must be an object", "stream_options")
    options = options or {}
    priority = _priority(body, config)
    prompt_ids = _prompt_ids(kind, body)
    if body.get("ignore_eos") and max_tokens is None:
        max_tokens = config.max_model_len - len(prompt_ids)
    _check_length(len(prompt_ids), max_tokens, config.max_model_len)
    return ParsedRequest(
        kind=kind,
        prompt_ids=prompt_ids,
        max_tokens=max_tokens,
        stop=_stop(body),
        stream=stream,
        include_usage=bool(options.get("include_usage")),
        continuous_usage=bool(options.get("continuous_usage_stats")),
        priority=priority,
    )


def _priority(body: dict[str, Any], config: SimConfig) -> int:
    """vLLM's `priority` field: an integer, lower served first, only under priority scheduling."""
    priority = body.get("priority", 0)
    if priority is None:
        return 0
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise bad_request("priority must be an integer", "priority")
    if priority != 0 and config.scheduling_policy != "priority":
        # vLLM's processor refuses it with this message, answered as a 400.
        raise bad_request(f"Got priority {priority} but Priority scheduling is not enabled.")
    return priority


def _check_length(prompt_len: int, max_tokens: int | None, max_model_len: int) -> None:
    if prompt_len >= max_model_len:
        raise bad_request(
            f"This model's maximum context length is {max_model_len} tokens. However, your "
            f"request has {prompt_len} input tokens. Please reduce the length of the input "
            "messages."
        )
    if max_tokens is not None and prompt_len + max_tokens > max_model_len:
        raise bad_request(
            f"'max_tokens' or 'max_completion_tokens' is too large: {max_tokens}. This "
            f"model's maximum context length is {max_model_len} tokens and your request has "
            f"{prompt_len} input tokens ({max_tokens} > {max_model_len} - {prompt_len}).",
            "max_tokens",
        )


def new_id(kind: Kind) -> str:
    return ("chatcmpl-" if kind == "chat" else "cmpl-") + os.urandom(16).hex()


def _usage(seq: Sequence, *, details: bool = True) -> dict[str, Any]:
    """Token counts; the final usage chunk of a stream carries no details, as in vLLM."""
    completion = len(seq.words)
    usage: dict[str, Any] = {
        "prompt_tokens": seq.prompt_len,
        "total_tokens": seq.prompt_len + completion,
        "completion_tokens": completion,
    }
    if details:
        usage |= {"prompt_tokens_details": None, "completion_tokens_details": None}
    return usage


# Fields vLLM sends as null unless a request asks for what they carry (token ids, logprobs,
# disaggregated-serving parameters, per-request metrics).
_CHAT_MESSAGE_NULLS = dict.fromkeys(
    ("refusal", "annotations", "audio", "function_call", "reasoning")
)
_CHOICE_NULLS = {"token_ids": None, "routed_experts": None}
_COMPLETION_CHOICE_NULLS = {"prompt_logprobs": None, "prompt_token_ids": None}
_BODY_NULLS = {"kv_transfer_params": None, "ec_transfer_params": None, "metrics": None}
_CHAT_BODY_NULLS = {"prompt_logprobs": None, "prompt_token_ids": None, "prompt_text": None}


def final_body(kind: Kind, request_id: str, model: str, seq: Sequence) -> bytes:
    """The non-streaming response body, with vLLM's fields in vLLM's order."""
    choice: dict[str, Any]
    if kind == "chat":
        message = {"role": "assistant", "content": seq.text(), **_CHAT_MESSAGE_NULLS}
        choice = {"index": 0, "message": message, "logprobs": None}
        obj = "chat.completion"
    else:
        choice = {"index": 0, "text": seq.text(), "logprobs": None}
        obj = "text_completion"
    choice["finish_reason"] = seq.finish_reason
    choice["stop_reason"] = seq.stop_reason
    choice |= _CHOICE_NULLS if kind == "chat" else {**_CHOICE_NULLS, **_COMPLETION_CHOICE_NULLS}
    body = {
        "id": request_id,
        "object": obj,
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
        "service_tier": None,
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "usage": _usage(seq),
        **(_CHAT_BODY_NULLS if kind == "chat" else {}),
        **_BODY_NULLS,
    }
    return json.dumps(body, separators=(",", ":")).encode()


class ChunkWriter:
    """Server-sent events for one streamed request, built from byte templates.

    The chunks carry the fields vLLM's do: `token_ids` on every chat token chunk (and
    `prompt_token_ids` on every completion chunk), null unless asked for; the role chunk
    carries `prompt_token_ids` and `prompt_text`; the last chunk before `[DONE]` carries
    `system_fingerprint`.
    """

    def __init__(self, kind: Kind, request_id: str, model: str, request: ParsedRequest) -> None:
        self.kind = kind
        self.include_usage = request.include_usage
        obj = "chat.completion.chunk" if kind == "chat" else "text_completion"
        head = json.dumps(
            {"id": request_id, "object": obj, "created": int(time.time()), "model": model},
            separators=(",", ":"),
        )
        self.head = b"data: " + head[:-1].encode() + b',"choices":['
        if kind == "chat":
            self.open = self.head + b'{"index":0,"delta":{"content":'
            self.close = b'},"logprobs":null,"finish_reason":null,"token_ids":null}]}\n\n'
        else:
            self.open = self.head + b'{"index":0,"text":'
            self.close = (
                b',"logprobs":null,"finish_reason":null,"stop_reason":null,'
                b'"prompt_token_ids":null,"token_ids":null}]}\n\n'
            )

    def first(self) -> bytes:
        """Chat streams start with the assistant role, as vLLM's do."""
        if self.kind != "chat":
            return b""
        return (
            self.head + b'{"index":0,"delta":{"role":"assistant","content":""},'
            b'"logprobs":null,"finish_reason":null}],"prompt_token_ids":null,"prompt_text":null}'
            b"\n\n"
        )

    def tokens(self, pieces: list[bytes]) -> bytes:
        open_, close = self.open, self.close
        return b"".join([open_ + piece + close for piece in pieces])

    def last(self, piece: bytes | None, seq: Sequence) -> bytes:
        """The chunk carrying the finish reason, the usage chunk, and `[DONE]`."""
        text = piece if piece is not None else b'""'
        tail: dict[str, Any] = {"finish_reason": seq.finish_reason, "stop_reason": seq.stop_reason}
        if self.kind == "chat":
            body = self.head + b'{"index":0,"delta":{"content":' + text + b'},"logprobs":null,'
        else:
            body = self.head + b'{"index":0,"text":' + text + b',"logprobs":null,'
            tail["prompt_token_ids"] = None
        tail["token_ids"] = None
        fingerprint = b',"system_fingerprint":' + json.dumps(SYSTEM_FINGERPRINT).encode()
        closing = json.dumps(tail, separators=(",", ":")).encode()[1:] + b"]"
        if self.include_usage:
            usage = json.dumps(_usage(seq, details=False), separators=(",", ":")).encode()
            out = [
                body + closing + b"}\n\n",
                self.head + b'],"usage":' + usage + fingerprint + b"}\n\n",
            ]
        else:
            out = [body + closing + fingerprint + b"}\n\n"]
        out.append(b"data: [DONE]\n\n")
        return b"".join(out)
