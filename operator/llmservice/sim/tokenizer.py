"""A cheap, deterministic tokenizer and the simulator's generated text.

Tokenization: text splits into pieces with one regular expression: a chat-template marker
such as `<|user|>`, or an optional leading space followed by up to six letters, up to three
digits, or one other character, or a run of whitespace. That gives about 4.5 characters per
token on English text, close to real BPE vocabularies. A piece's id is the CRC-32 of its
UTF-8 bytes modulo `VOCAB_SIZE`, so ids are stable across processes and machines (Python's
`hash()` is salted per process). Same text, same ids; a shared text prefix gives a shared
id prefix, which is all the prefix cache needs.

Chat messages are flattened with `render_chat()`: `<|role|>\\ncontent\\n` per message, then
`<|assistant|>\\n`. Earlier turns therefore render to the same prefix in later requests.

Generated text: words drawn from `WORDS` (each a single token, with a leading space) by a
small linear congruential generator seeded from the prompt's ids, so the same prompt always
gets the same answer, whatever the sampling parameters say.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = [
    "VOCAB_SIZE",
    "WORDS",
    "TextGenerator",
    "render_chat",
    "seed_of",
    "tokenize",
]

VOCAB_SIZE = 128_000

_PIECE = re.compile(r"<\|[a-z_]{1,20}\|>|\s?[^\W\d_]{1,6}|\s?\d{1,3}|\s?[^\w\s]|_|\s+")

_WORD_TEXT = (
    "the of and to in is that for it as with was on be by at this are from or an "
    "not but have which one all were they their can has more will would been when "
    "there what so if about no out up into some time only other new could than its "
    "then two also these may first any like now well over such our most even very "
    "model token cache prefix query router engine pod shard queue batch stream "
    "lag budget signal vector matrix kernel memory tensor layer weight value "
    "answer reason simple small large fast slow early late clear quiet bright green "
    "river stone cloud field light north south east west spring summer winter autumn"
)
WORDS: tuple[str, ...] = tuple(" " + w for w in _WORD_TEXT.split())


def tokenize(text: str) -> list[int]:
    """Token ids of `text` (see the module docstring for the scheme)."""
    crc = zlib.crc32
    return [crc(piece.encode()) % VOCAB_SIZE for piece in _PIECE.findall(text)]


def _content_text(content: Any) -> str:
    """A message's content: a string, or a list of parts of which text parts count."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text":
                texts.append(str(part.get("text", "")))
            elif isinstance(part, str):
                texts.append(part)
        return "".join(texts)
    raise ValueError("message content must be a string or a list of content parts")


def render_chat(messages: Sequence[Any]) -> str:
    """Flatten chat messages the way a chat template would."""
    out = []
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise ValueError("each message must be an object with a string 'role'")
        out.append(f"<|{message['role']}|>\n{_content_text(message.get('content'))}\n")
        if message.get("tool_calls"):
            out.append(json.dumps(message["tool_calls"], sort_keys=True) + "\n")
    out.append("<|assistant|>\n")
    return "".join(out)


def seed_of(ids: Iterable[int]) -> int:
    """A 31-bit seed from token ids (order matters)."""
    seed = 0x2545F491
    for i in ids:
        seed = (seed * 31 + i) & 0x7FFFFFFF
    return seed


class TextGenerator:
    """The next word for a sequence: an LCG over `WORDS`, seeded per prompt."""

    __slots__ = ("state",)

    def __init__(self, seed: int) -> None:
        self.state = seed & 0x7FFFFFFF

    def next_index(self) -> int:
        self.state = (self.state * 1103515245 + 12345) & 0x7FFFFFFF
        return (self.state >> 8) % len(WORDS)


# Per-word constants the engine uses on its hot path.
WORD_IDS: tuple[int, ...] = tuple(tokenize(w)[0] for w in WORDS)
WORD_JSON: tuple[bytes, ...] = tuple(json.dumps(w).encode() for w in WORDS)
