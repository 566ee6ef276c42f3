"""The engine without HTTP: scheduling, chunked prefill, aborts."""

from __future__ import annotations

import asyncio

from llmservice.sim import Engine, TimingProfile

from .conftest import fast_config

STEP = TimingProfile("test-step", 0.002, 0.0, 0.0, 0.0)
# Long enough that a test polling every millisecond on a busy machine still looks between
# two steps, not after the last one.
SLOW_STEP = TimingProfile("test-slow-step", 0.1, 0.0, 0.0, 0.0)


async def _steps(engine: Engine, n: int) -> None:
    target = engine.metrics.steps + n
    while engine.metrics.steps < target:  # noqa: ASYNC110 (polling a counter)
        await asyncio.sleep(0.001)


def test_max_num_seqs_and_waiting_queue() -> None:
    async def main() -> None:
        engine = Engine(fast_config(profile=STEP, max_num_seqs=3))
        seqs = [engine.new_sequence(f"r{i}", [1, 2, 3, i], 50) for i in range(5)]
        for seq in seqs:
            engine.submit(seq)
        await _steps(engine, 2)
        assert (len(engine.running), len(engine.waiting)) == (3, 2)
        engine.abort(seqs[0])  # a running one: its slot frees at once
        engine.abort(seqs[4])  # a waiting one
        assert (len(engine.running), len(engine.waiting)) == (2, 1)
        await _steps(engine, 1)
        assert (len(engine.running), len(engine.waiting)) == (3, 0)
        assert engine.metrics.aborted == 2
        await engine.stop()

    asyncio.run(main())


def test_long_prompts_prefill_in_chunks_of_the_token_budget() -> None:
    async def main() -> None:
        engine = Engine(fast_config(profile=SLOW_STEP, max_num_batched_tokens=512))
        seq = engine.new_sequence("long", list(range(2000)), 2)
        engine.submit(seq)
        await _steps(engine, 2)
        assert 0 < seq.prefilled < seq.prompt_len
        assert not seq.words
        await seq.wait()
        assert seq.finish_reason == "length"
        # 2000 tokens at 512 a step: 4 prefill steps, the last one emitting the first token.
        assert engine.metrics.steps == 5
        assert engine.metrics.iteration_tokens.sum == 2000 + 2  # prompt plus two tokens
        await engine.stop()

    asyncio.run(main())


def test_natural_length_is_deterministic_and_within_range() -> None:
    engine = Engine(fast_config(natural_output_tokens=(5, 9)))
    a = engine.new_sequence("a", [7, 8, 9], None)
    b = engine.new_sequence("b", [7, 8, 9], None)
    assert a.max_tokens == b.max_tokens
    assert 5 <= a.max_tokens <= 9
    assert not a.max_tokens_given
