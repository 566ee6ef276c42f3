"""API keys: who may call the router.

The keys come from a file (the operator mounts `router.apiKeysSecretRef` there), in YAML:

    keys:
      - name: team-a          # shown in logs and metrics instead of the key
        key: sk-team-a-...    # what clients send as `Authorization: Bearer <key>`

Keys are kept only as SHA-256 digests and looked up by the digest of what the client sent,
so timing reveals nothing about a key; a key never appears in a log line or a metric.
Without a file the router is open. A file that cannot be read or parsed stops the router at
start (failing closed), never silently opens it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llmservice.router.clients import Client

__all__ = ["ApiKeys", "load_api_keys"]


class _KeyEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[
        str, Field(min_length=1, max_length=63, pattern=r"^[A-Za-z0-9][-A-Za-z0-9_.]*$")
    ]
    key: Annotated[str, Field(min_length=16, max_length=256)]


class _KeysFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keys: Annotated[list[_KeyEntry], Field(min_length=1)]


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


@dataclass(frozen=True)
class ApiKeys:
    """Digest -> the client that key identifies."""

    clients: dict[bytes, Client]

    def authenticate(self, authorization: bytes | None) -> Client | None:
        """The key's client for an `Authorization: Bearer <key>` header, else None."""
        if not authorization or authorization[:7].lower() != b"bearer ":
            return None
        return self.clients.get(hashlib.sha256(authorization[7:].strip()).digest())


def load_api_keys(path: str) -> ApiKeys:
    """Read and validate the keys file; ValueError with a clear message otherwise."""
    try:
        document = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        parsed = _KeysFile.model_validate(document)
    except OSError as error:
        raise ValueError(f"cannot read API keys file {path}: {error.strerror}") from None
    except yaml.YAMLError:
        raise ValueError(f"API keys file {path} is not valid YAML") from None
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
            for e in error.errors(include_url=False, include_input=False)
        )
        raise ValueError(f"API keys file {path} is invalid: {problems}") from None
    clients = {_digest(entry.key): Client(name=entry.name) for entry in parsed.keys}
    if len(clients) != len(parsed.keys):
        raise ValueError(f"API keys file {path} repeats a key")
    return ApiKeys(clients)
