"""router_instructions' request bodies: what each option sends."""

from __future__ import annotations

import json

import pytest
from bench.router_bench import CHAT, HELLO
from bench.router_instructions import request_body


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("chat", "messages"), [(False, HELLO), (True, CHAT)])
def test_a_body_asks_for_the_stream_and_carries_the_prompt_chosen(
    stream: bool, chat: bool, messages: str
) -> None:
    body = json.loads(request_body(stream, chat))
    assert body == {"model": "m", "stream": stream, "messages": json.loads(messages)}
    if chat:
        assert len(request_body(stream, chat)) > 14_000
