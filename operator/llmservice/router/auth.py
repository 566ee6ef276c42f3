"""API keys: who may call the router, and the policy each key gets.

The keys come from a file (the operator mounts `router.apiKeysSecretRef` there), in YAML:

    defaults:                   # optional; for every key that omits a field
      priority: 1
      maxQueued: 50
      requestsPerMinute: 100
    keys:
      - name: batch-jobs        # shown in logs and metrics instead of the key
        key: sk-batch-0123456789abcdef   # what clients send as `Authorization: Bearer <key>`
        priority: 1             # a weight: a higher one gets a larger share of dispatch
        maxQueued: 10           # requests of this key waiting at once
        requestsPerMinute: 200
        tokensPerMinute: 200000

Every field but `name` and `key` is optional. A key's omitted field comes from `defaults`,
else from `Client`'s own default (priority 1; no limit of its own for the others). A file
with only `keys:` entries of `name` and `key` is valid too. Limits and priorities are whole
numbers of at least 1; names and keys are unique; keys have 16 to 256 characters.

Keys are kept only as SHA-256 digests and looked up by the digest of what the client sent,
so timing reveals nothing about a key; a key never appears in a log line, a metric or an
error message (a message names the entry by its index and name, and the field). Without a
file the router is open. A file that cannot be read or parsed stops the router at start
(failing closed), never silently opens it; later changes are `llmservice.router.keys_reload`'s.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llmservice.router.clients import DEFAULT_PRIORITY, Client

__all__ = ["ApiKeys", "load_api_keys", "parse_api_keys"]

MIN_KEY_LENGTH = 16
MAX_KEY_LENGTH = 256

PositiveInt = Annotated[int, Field(ge=1)]


class _Policy(BaseModel):
    """The fields a key and `defaults` share; None means "not given here"."""

    model_config = ConfigDict(extra="forbid", strict=True)

    priority: PositiveInt | None = None
    max_queued: PositiveInt | None = Field(default=None, alias="maxQueued")
    requests_per_minute: PositiveInt | None = Field(default=None, alias="requestsPerMinute")
    tokens_per_minute: PositiveInt | None = Field(default=None, alias="tokensPerMinute")


class _KeyEntry(_Policy):
    name: Annotated[
        str, Field(min_length=1, max_length=63, pattern=r"^[A-Za-z0-9][-A-Za-z0-9_.]*$")
    ]
    key: Annotated[str, Field(min_length=MIN_KEY_LENGTH, max_length=MAX_KEY_LENGTH)]


class _KeysFile(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    defaults: _Policy = Field(default_factory=_Policy)
    keys: Annotated[list[_KeyEntry], Field(min_length=1)]


def _digest(key: str | bytes) -> bytes:
    return hashlib.sha256(key.encode() if isinstance(key, str) else key).digest()


@dataclass(frozen=True)
class ApiKeys:
    """Digest -> the client that key identifies."""

    clients: dict[bytes, Client]

    def authenticate(self, authorization: bytes | None) -> Client | None:
        """The key's client for an `Authorization: Bearer <key>` header, else None."""
        if not authorization or authorization[:7].lower() != b"bearer ":
            return None
        return self.clients.get(hashlib.sha256(authorization[7:].strip()).digest())

    def __len__(self) -> int:
        return len(self.clients)


def _entry_label(document: Any, index: int) -> str:
    """`keys[2] (batch-jobs)`: the entry's index and, when it has a readable one, its name."""
    label = f"keys[{index}]"
    entries = document.get("keys") if isinstance(document, Mapping) else None
    if isinstance(entries, Sequence) and index < len(entries):
        entry = entries[index]
        name = entry.get("name") if isinstance(entry, Mapping) else None
        if isinstance(name, str) and name:
            # A name is not secret, but a long or odd one is cut short in messages.
            label += f" ({name[:63]})"
    return label


def _where(document: Any, loc: Sequence[int | str]) -> str:
    parts: list[str] = []
    for position, part in enumerate(loc):
        if isinstance(part, int) and position == 1 and loc[0] == "keys":
            parts[-1] = _entry_label(document, part)
        elif isinstance(part, int):
            parts[-1] += f"[{part}]"
        else:
            parts.append(part)
    return ".".join(parts) or "the file"


def _problems(document: Any, error: ValidationError) -> str:
    # include_input=False: the offending value may be a key, which must not be echoed.
    return "; ".join(
        f"{_where(document, e['loc'])}: {e['msg']}"
        for e in error.errors(include_url=False, include_input=False)
    )


def _duplicates(document: Any, parsed: _KeysFile) -> list[str]:
    problems: list[str] = []
    names: dict[str, int] = {}
    digests: dict[bytes, int] = {}
    for index, entry in enumerate(parsed.keys):
        label = _entry_label(document, index)
        first = names.setdefault(entry.name, index)
        if first != index:
            problems.append(f"{label}.name: the same name as keys[{first}]")
        first = digests.setdefault(_digest(entry.key), index)
        if first != index:
            problems.append(
                f"{label}.key: the same key as {_entry_label(document, first)}; each key"
                " must identify one client"
            )
    return problems


def _client(entry: _KeyEntry, defaults: _Policy) -> Client:
    def pick(field: str) -> int | None:
        value: int | None = getattr(entry, field)
        return value if value is not None else getattr(defaults, field)

    return Client(
        name=entry.name,
        priority=pick("priority") or DEFAULT_PRIORITY,
        max_queued=pick("max_queued"),
        requests_per_minute=pick("requests_per_minute"),
        tokens_per_minute=pick("tokens_per_minute"),
    )


def parse_api_keys(text: str | bytes, source: str = "API keys file") -> ApiKeys:
    """Validate a keys file's content; ValueError naming the entry and field otherwise.

    `source` starts each message (the file's path, say). No message carries a key.
    """
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        # Only the position: the YAML error's own text may quote the line, and so a key.
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise ValueError(f"{source} is not valid YAML{where}") from None
    if not isinstance(document, Mapping):
        raise ValueError(f"{source} is invalid: the file must be a mapping with a `keys:` list")
    try:
        parsed = _KeysFile.model_validate(document)
    except ValidationError as error:
        raise ValueError(f"{source} is invalid: {_problems(document, error)}") from None
    duplicates = _duplicates(document, parsed)
    if duplicates:
        raise ValueError(f"{source} is invalid: {'; '.join(duplicates)}")
    return ApiKeys({_digest(e.key): _client(e, parsed.defaults) for e in parsed.keys})


def load_api_keys(path: str) -> ApiKeys:
    """Read and validate the keys file; ValueError with a clear message otherwise."""
    try:
        text = Path(path).read_bytes()
    except OSError as error:
        raise ValueError(f"cannot read API keys file {path}: {error.strerror}") from None
    return parse_api_keys(text, f"API keys file {path}")
