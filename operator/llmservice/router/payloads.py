"""Pure checks and rewrites of request and response bodies.

Everything a client can get wrong about a body is decided here, before any replica is
chosen, and reported as a `ClientError` (4xx) naming the offending parameter. Response
bodies are only read for ``usage`` (token counts); prompts are never kept or logged.

The router is transparent to the engine (see `llmservice.router.routes`): it decodes only
the few fields it routes by and checks, and forwards the body's bytes as they came unless
it must change a field (a model alias, the engine priority), in which case that field alone
is rewritten. The parser is msgspec, chosen by measurement (bench/json_parse_bench.py and
bench/README.md): decoding into `Fields`, a struct of the fields the router reads held as
raw JSON slices, validates the whole body but skips everything else without building a
Python object for it. Whatever a body holds, the work is one pass over its bytes plus a
bounded number of small objects:

- nesting deeper than the interpreter's recursion limit is refused (msgspec raises
  RecursionError, not a crash); skipped values are never converted, so an integer of
  thousands of digits costs a scan and is left to the engine, and a field the router reads
  must have its JSON type (a number where ``model`` should be is a 400);
- bytes that are not UTF-8, and escapes of lone surrogates (``"\\ud800"``), are refused;
- only the first `HEAD_ITEMS` messages (and content parts) are ever decoded, and a body of
  more than `MAX_ELEMENTS` elements (counted by its commas, before parsing: a byte count,
  well under a millisecond for the largest body) is refused with a 413, so the scan of the
  densest body allowed stays within milliseconds (a million elements is more than any
  model's context holds as a prompt).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import msgspec
from msgspec import Raw
from msgspec.structs import astuple

from llmservice.router.errors import (
    InvalidRequest,
    ModelNotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from llmservice.router.routes import Prompt, Route

__all__ = [
    "HEAD_ITEMS",
    "MAX_ELEMENTS",
    "TEXT_HEAD_BYTES",
    "Fields",
    "api_chat_body",
    "check_content_type",
    "check_required",
    "continues",
    "parse_body",
    "prompt_view",
    "resolve_model",
    "set_fields",
    "usage_from_json",
    "usage_from_sse_tail",
]

# The most JSON values a body may hold, counted as its commas (an upper bound: commas in
# strings count too). Dense bodies of tiny elements are what makes a scan slow.
MAX_ELEMENTS = 1 << 20

# How much of a long message text is decoded for the prefix key: far more than any prefix
# needs, far less than the largest body.
TEXT_HEAD_BYTES = 64 * 1024

# How many leading messages (and content parts of each) are decoded for the prefix key
# and the shape check; the rest are only scanned.
HEAD_ITEMS = 16


# The value of a field a body does not have: an empty slice (a JSON null is ``null``).
_ABSENT = Raw()


class _Head(msgspec.Struct, array_like=True):
    """The first `HEAD_ITEMS` elements of a JSON array; later ones are skipped unread."""

    i0: Raw = _ABSENT
    i1: Raw = _ABSENT
    i2: Raw = _ABSENT
    i3: Raw = _ABSENT
    i4: Raw = _ABSENT
    i5: Raw = _ABSENT
    i6: Raw = _ABSENT
    i7: Raw = _ABSENT
    i8: Raw = _ABSENT
    i9: Raw = _ABSENT
    i10: Raw = _ABSENT
    i11: Raw = _ABSENT
    i12: Raw = _ABSENT
    i13: Raw = _ABSENT
    i14: Raw = _ABSENT
    i15: Raw = _ABSENT


class Fields(msgspec.Struct):
    """The top-level fields the router reads, as raw JSON; empty when absent."""

    model: Raw = _ABSENT
    stream: Raw = _ABSENT
    user: Raw = _ABSENT
    priority: Raw = _ABSENT
    # Decoded in the same pass: a list's first items (any other type is a 400).
    messages: _Head | None = None
    prompt: Raw = _ABSENT
    input: Raw = _ABSENT
    instructions: Raw = _ABSENT
    system: Raw = _ABSENT
    tokens: Raw = _ABSENT
    token_ids: Raw = _ABSENT
    query: Raw = _ABSENT


class _Item(msgspec.Struct):
    """A message or a content part: the members the prefix key reads."""

    role: Raw = _ABSENT
    content: Raw = _ABSENT
    text: Raw = _ABSENT


class _Object(msgspec.Struct):
    """Any JSON object, validated and skipped."""


_FIELDS = msgspec.json.Decoder(Fields)
_HEAD = msgspec.json.Decoder(_Head)
_ITEM = msgspec.json.Decoder(_Item)
_OBJECT = msgspec.json.Decoder(_Object)
_MEMBERS = msgspec.json.Decoder(dict[str, Raw])
_STR = msgspec.json.Decoder(str)
_ENCODE = msgspec.json.encode
_EMPTY = (b"null", b'""', b"[]", b"{}")
_AT = re.compile(r"at `\$\.(\w+)")


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


def parse_body(raw: bytes) -> Fields:
    """The fields the router reads from the JSON object in ``raw``, the rest validated."""
    # A body shorter than MAX_ELEMENTS bytes cannot hold as many commas: not counted (a
    # count takes about five instructions a byte, on every request).
    if len(raw) >= MAX_ELEMENTS and raw.count(b",") >= MAX_ELEMENTS:
        raise PayloadTooLarge(f"The request body holds more than {MAX_ELEMENTS} JSON values.")
    if not raw.isascii():
        try:
            raw.decode()
        except UnicodeDecodeError as error:
            raise InvalidRequest(f"The request body is not valid UTF-8: {error}") from None
    try:
        return _FIELDS.decode(raw)
    except RecursionError:
        raise InvalidRequest("The request body is nested too deeply.") from None
    except msgspec.ValidationError as error:
        if str(error).startswith("Expected `object`"):
            raise InvalidRequest("The request body must be a JSON object.") from None
        field = _AT.search(str(error))
        raise InvalidRequest(
            f"The request body is not valid: {error}", param=field[1] if field else None
        ) from None
    except msgspec.DecodeError as error:
        raise InvalidRequest(f"The request body is not valid JSON: {error}") from None


# The first byte of a JSON value of each type, as `_is` compares it.
_STRING, _ARRAY, _OBJECT_START = ord('"'), ord("["), ord("{")


def _is(raw: Raw, kind: int) -> bool:
    """Whether the raw JSON value starts with the byte ``kind`` (its type's first byte)."""
    # Indexing the view compares an int; slicing it would make a second view per call.
    return len(raw) > 0 and memoryview(raw)[0] == kind


def _equals(raw: Raw, value: bytes) -> bool:
    """Whether the raw JSON value is ``value``; never copies a long one."""
    return len(raw) == len(value) and bytes(raw) == value


def _string(raw: Raw, name: str) -> str | None:
    """The string value of a field, None when absent or null; 400 for any other type."""
    if not raw or _equals(raw, b"null"):
        return None
    if not _is(raw, _STRING):
        raise InvalidRequest(f"{name!r} must be a string.", param=name)
    return _STR.decode(raw)


def string_or_none(raw: Raw) -> str | None:
    """The string value of a field, None for anything else."""
    return _STR.decode(raw) if _is(raw, _STRING) else None


def is_true(raw: Raw) -> bool:
    return _equals(raw, b"true")


def resolve_model(
    fields: Fields, names: tuple[str, ...], *, required: bool, any_name: bool = False
) -> str | None:
    """The model the request names, checked against the served name and aliases.

    None when the request names none and the route lets it out (the engine then serves
    its one model). With ``any_name`` every name is taken as the served model's.
    """
    model = _string(fields.model, "model")
    if not model:
        if required:
            raise InvalidRequest("You must provide a model parameter.", param="model")
        return None
    if model not in names and not any_name:
        raise ModelNotFound(
            f"The model {model!r} does not exist; this service serves "
            + ", ".join(repr(n) for n in names)
            + ".",
            param="model",
        )
    return model


def _head_items(head: _Head | None) -> list[Raw]:
    if head is None:
        return []
    return [item for item in astuple(head) if item]


def _items(raw: Raw) -> list[Raw]:
    return _head_items(_HEAD.decode(raw))


def check_required(route: Route, fields: Fields) -> None:
    """Raise when none of the route's essential fields is there (or it is empty)."""
    for name in route.required:
        if name == "messages":
            head = fields.messages
            # A list's items fill the head in order: it has one when it has a first.
            if head is not None and head.i0:
                if route.messages:
                    _check_message_objects(head)
                return
            continue
        value: Raw = getattr(fields, name)
        if value and (len(value) > 4 or bytes(value) not in _EMPTY):
            return
    if route.required:
        name = route.required[0]
        raise InvalidRequest(f"Missing required parameter: {name!r}.", param=name)


def _check_message_objects(head: _Head) -> None:
    for item in astuple(head):
        if not item:
            return
        if not _is(item, _OBJECT_START):
            raise InvalidRequest("'messages' must be a list of message objects.", param="messages")


def _string_head(raw: Raw) -> str:
    """The start of a JSON string value: all of it, or its first `TEXT_HEAD_BYTES` bytes."""
    if len(raw) <= TEXT_HEAD_BYTES:
        return _STR.decode(raw)
    view = memoryview(raw)
    # Close the string early; a cut inside an escape or a UTF-8 sequence is not valid
    # JSON, and stepping back by at most the longest of those (12 bytes) finds a cut that is.
    for cut in range(TEXT_HEAD_BYTES, TEXT_HEAD_BYTES - 16, -1):
        try:
            return _STR.decode(bytes(view[:cut]) + b'"')
        except msgspec.DecodeError:
            continue
    return ""


def _text(raw: Raw) -> str:
    """The text of a content value: a string, or the text parts of its first parts."""
    if _is(raw, _STRING):
        return _string_head(raw)
    if not _is(raw, _ARRAY):
        return ""
    texts = []
    for part in _items(raw):
        if _is(part, _OBJECT_START):
            text = _ITEM.decode(part).text
            if _is(text, _STRING):
                texts.append(_string_head(text))
    return "".join(texts)


def _messages(items: list[Raw]) -> list[dict[str, Any]]:
    out = []
    for item in items:
        if _is(item, _OBJECT_START):
            message = _ITEM.decode(item)
            out.append({"role": string_or_none(message.role), "content": _text(message.content)})
    return out


def continues(kind: Prompt, fields: Fields) -> bool:
    """Whether a chat's messages hold an assistant message: a later turn of a conversation.

    Only the first `HEAD_ITEMS` messages are looked at; a first turn that opens with
    examples of earlier turns counts as a later one (what this decides tolerates that).
    """
    if kind is not Prompt.CHAT and kind is not Prompt.ANTHROPIC:
        return False
    for item in _head_items(fields.messages)[1:]:
        if _is(item, _OBJECT_START) and _equals(_ITEM.decode(item).role, b'"assistant"'):
            return True
    return False


def prompt_view(kind: Prompt, fields: Fields) -> dict[str, Any]:
    """The fields `llmservice.router.balancer.routing_key` reads, decoded from their heads.

    Chat-shaped requests become ``messages`` (the system prompt first), completion-shaped
    ones ``prompt``; routes without a prompt give only ``user``.
    """
    view: dict[str, Any] = {"user": string_or_none(fields.user)}
    if kind is Prompt.CHAT:
        view["messages"] = _messages(_head_items(fields.messages))
    elif kind is Prompt.ANTHROPIC:
        system = _text(fields.system)
        head = [{"role": "system", "content": system}] if system else []
        view["messages"] = head + _messages(_head_items(fields.messages))
    elif kind is Prompt.RESPONSES:
        instructions = string_or_none(fields.instructions)
        head = [{"role": "system", "content": instructions}] if instructions else []
        given = _string_head(fields.input) if _is(fields.input, _STRING) else None
        items = (
            [{"role": "user", "content": given}]
            if given
            else _messages(_items(fields.input) if _is(fields.input, _ARRAY) else [])
        )
        view["messages"] = head + items
    elif kind is Prompt.COMPLETION:
        prompt = fields.prompt
        if _is(prompt, _ARRAY):
            first = _items(prompt)
            prompt = first[0] if first else _ABSENT
        view["prompt"] = _string_head(prompt) if _is(prompt, _STRING) else None
    return view


def _member(name: str) -> re.Pattern[bytes]:
    return re.compile(rb'"' + re.escape(name.encode()) + rb'"\s*:\s*')


_MEMBER = {name: _member(name) for name in Fields.__struct_fields__}
# How many textual matches of a member name are tried before the body is rebuilt.
_SPLICE_TRIES = 4


def _top_level(raw: bytes, at: int) -> bool:
    """Whether a member starting at ``at`` is one of the top-level object's members.

    It is when everything before it, closed with a brace, is a JSON object: a member nested
    deeper (or a match inside a string) leaves an array, object or string open before it.
    """
    before = raw[:at].rstrip()
    if before.endswith(b","):
        before = before[:-1]
    try:
        _OBJECT.decode(before + b"}")
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return False
    return True


def _splice(raw: bytes, name: str, old: Raw, new: bytes) -> bytes | None:
    """``raw`` with the top-level member ``name``'s value ``old`` replaced by ``new``."""
    value = bytes(old)
    for tries, match in enumerate(_MEMBER[name].finditer(raw)):
        if tries == _SPLICE_TRIES:
            break
        start = match.end()
        if raw.startswith(value, start) and _top_level(raw, match.start()):
            return raw[:start] + new + raw[start + len(value) :]
    return None


def _rebuild(raw: bytes, changes: Mapping[str, bytes | None]) -> bytes:
    """``raw`` re-encoded with ``changes`` applied; other values copied as they are."""
    members = _MEMBERS.decode(raw)
    for name, value in changes.items():
        if value is None:
            members.pop(name, None)
        else:
            members[name] = Raw(value)
    return _ENCODE(members)


def set_fields(raw: bytes, fields: Fields, changes: Mapping[str, bytes]) -> bytes:
    """``raw`` with each top-level member in ``changes`` set to its (encoded) value.

    A member is replaced in place, or added before the closing brace when the object has
    none, so the rest of the body is copied, not re-encoded. A member the splice cannot
    find for certain (an escaped name, repeated names) makes the body rebuilt instead.
    """
    out = raw
    for name, new in changes.items():
        old: Raw = getattr(fields, name)
        if not old:
            body = out.rstrip()
            inner = body[:-1].rstrip()
            comma = b"" if inner.lstrip() == b"{" else b","
            out = inner + comma + _ENCODE(name) + b":" + new + b"}"
            continue
        spliced = _splice(out, name, old, new)
        if spliced is None or len(_MEMBER[name].findall(out)) > 1:
            return _rebuild(raw, changes)
        out = spliced
    return out


def api_chat_body(raw: bytes, served_name: str, extra: Mapping[str, bytes]) -> bytes:
    """The /v1/chat/completions body for an /api/chat request.

    Every field is passed on for the engine to accept or refuse; a null means the field is
    absent and is dropped (clients copy bodies ending with ``"logprobs": null``).
    """
    members = _MEMBERS.decode(raw)
    changes: dict[str, bytes | None] = {
        name: None for name, value in members.items() if _equals(value, b"null")
    }
    changes["model"] = _ENCODE(served_name)
    changes.update(extra)
    return _rebuild(raw, changes)


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
