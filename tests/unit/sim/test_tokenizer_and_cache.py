"""The tokenizer is deterministic and prefix-preserving; the cache is chained and LRU."""

from __future__ import annotations

import pytest

from llmservice.sim.prefix_cache import PrefixCache, block_hashes
from llmservice.sim.tokenizer import VOCAB_SIZE, WORD_IDS, WORDS, render_chat, tokenize


def test_tokenize_is_deterministic_and_roughly_four_characters_per_token() -> None:
    text = "The quick brown fox jumps over the lazy dog, 12345 times! " * 20
    ids = tokenize(text)
    assert ids == tokenize(text)
    assert all(0 <= i < VOCAB_SIZE for i in ids)
    assert 3.0 <= len(text) / len(ids) <= 6.0


def test_shared_text_prefix_gives_shared_id_prefix() -> None:
    a = render_chat([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "A"}])
    b = render_chat([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "B"}])
    ta, tb = tokenize(a), tokenize(b)
    common = tokenize("<|system|>\nBe brief.\n<|user|>")
    assert ta[: len(common)] == tb[: len(common)] == common
    assert ta != tb


def test_generated_words_are_single_tokens() -> None:
    assert [tokenize(w) for w in WORDS] == [[i] for i in WORD_IDS]


def test_chat_content_parts() -> None:
    parts = [
        {"type": "text", "text": "hello "},
        {"type": "image_url"},
        {"type": "text", "text": "x"},
    ]
    assert render_chat([{"role": "user", "content": parts}]) == "<|user|>\nhello x\n<|assistant|>\n"
    with pytest.raises(ValueError, match="role"):
        render_chat([{"content": "no role"}])


def test_block_hashes_are_chained() -> None:
    a = block_hashes(list(range(40)), 16)
    b = block_hashes([99, *range(1, 40)], 16)
    assert len(a) == 2  # only full blocks
    assert a[0] != b[0]
    # Block 1 has the same tokens in both, but a different prefix, so a different name.
    assert a[1] != b[1]
    assert block_hashes(list(range(40)), 16) == a


def test_match_stops_at_first_miss_and_lru_evicts_oldest() -> None:
    cache = PrefixCache(capacity=4)
    first = block_hashes(list(range(48)), 16)  # 3 blocks
    cache.insert(first)
    assert cache.match(first) == 3
    assert cache.match([first[0], 12345, first[2]]) == 1
    second = block_hashes(list(range(100, 132)), 16)  # 2 blocks: evicts the LRU one
    cache.match(first[1:])  # first[0] is now least recently used
    cache.insert(second)
    assert len(cache) == 4
    assert cache.evictions == 1
    assert first[0] not in cache
    assert cache.match(first) == 0  # the chain is broken at its first block
    assert cache.match(second) == 2
