"""The inference routes the router proxies, and what it checks on each.

The router is transparent to the engine: it reads only the fields it routes by (``model``,
``stream``, ``user`` and the head of the prompt) and the one field a route cannot do
without, and passes every other field through untouched for the engine to accept or
refuse. The table follows vLLM's own rules (its request models in
``vllm/entrypoints/*/protocol.py``): where vLLM lets ``model`` out and serves its default
model, so does the router.

``prompt`` says where the prompt's stable head is, for prefix affinity (`Prompt`):
chat-shaped routes hash the system messages and the first user message, completion-shaped
ones the first prompt; pooling, scoring and tokenizer routes have no key besides the session
header and ``user`` (they keep no KV cache worth meeting again) and go to the least-loaded
replica.

A lookup is one dictionary access per request (`ROUTES`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["API_CHAT", "ROUTES", "Prompt", "Route"]


class Prompt(enum.Enum):
    """Which fields hold the head of the prompt a request's prefix key is made of."""

    NONE = "none"
    CHAT = "chat"  # messages
    COMPLETION = "completion"  # prompt (a string, or the first of a list)
    RESPONSES = "responses"  # instructions, then input (a string or a list of items)
    ANTHROPIC = "anthropic"  # system, then messages


@dataclass(frozen=True, slots=True)
class Route:
    """What the router needs from a request to one proxied path."""

    path: str
    # The request must carry at least one of these, not null and not empty.
    required: tuple[str, ...] = ()
    model_required: bool = False
    prompt: Prompt = Prompt.NONE
    # Whether ``required`` holds a list of message objects (checked on its first few).
    messages: bool = False


API_CHAT = "/api/chat"

_TABLE = (
    Route("/v1/chat/completions", ("messages",), prompt=Prompt.CHAT, messages=True),
    Route("/v1/completions", ("prompt",), prompt=Prompt.COMPLETION),
    # Several conversations in one request (lists of messages, not messages).
    Route("/v1/chat/completions/batch", ("messages",)),
    # Token ids in, token ids out.
    Route("/inference/v1/generate", ("token_ids",)),
    # vLLM embeds either an input or a conversation.
    Route("/v1/embeddings", ("input", "messages")),
    Route("/v1/responses", ("input",), prompt=Prompt.RESPONSES),
    Route(
        "/v1/messages",
        ("messages",),
        model_required=True,
        prompt=Prompt.ANTHROPIC,
        messages=True,
    ),
    Route("/v1/messages/count_tokens", ("messages",), model_required=True, messages=True),
    Route("/tokenize", ("prompt", "messages")),
    Route("/detokenize", ("tokens",)),
    Route("/pooling", ("input", "messages")),
    Route("/classify", ("input", "messages")),
    Route("/v2/embed"),
    # Scoring takes several shapes (queries/documents, data_1/data_2, text_1/text_2).
    Route("/score"),
    Route("/v1/score"),
    Route("/rerank", ("query",)),
    Route("/v1/rerank", ("query",)),
    Route("/v2/rerank", ("query",)),
    Route("/generative_scoring", ("query",)),
    # /api/chat is sent upstream as a chat completion; its body is rebuilt (see app.py).
    Route(API_CHAT, ("messages",), prompt=Prompt.CHAT, messages=True),
)

ROUTES: dict[str, Route] = {route.path: route for route in _TABLE}
