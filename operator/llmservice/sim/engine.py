"""The engine: one step loop per replica, continuous batching, chunked prefill.

Each step, as in vLLM's v1 scheduler:

1. Every running sequence whose prompt is done decodes one token (one token of budget).
2. Running sequences still in prefill take the next chunk of their prompt.
3. Waiting sequences are admitted while fewer than `max_num_seqs` run and budget is left:
   first come first served, or under the `priority` scheduling policy the lowest `priority`
   value first (arrival order among equals), as vLLM's priority queue does; the simulator
   does not preempt running sequences for a waiting one. On admission the prompt's full
   blocks are looked up in the prefix cache; cached tokens are never computed (as in vLLM,
   at least the last prompt token always is). `vllm:prefix_cache_queries`/`_hits` count tokens.

The budget per step is `max_num_batched_tokens`. The step lasts
`TimingProfile.step_seconds(...) * time_scale` of wall time, measured against a virtual
clock so short sleeps do not drift (the clock resets when the loop falls far behind or
idles). At the end of the step every sequence that is past its prompt emits its token;
streaming consumers are woken once per step and write all their pending chunks at once.

A sequence finishes with `length` at `max_tokens` (or the context limit), with `stop` at
its natural length when the request set no `max_tokens`, or with `stop` when a stop string
appears. `abort()` removes a sequence at once, whether waiting or running.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from dataclasses import dataclass, field

from llmservice.sim.config import SimConfig
from llmservice.sim.metrics import EngineGauges, SimMetrics
from llmservice.sim.prefix_cache import PrefixCache, block_hashes
from llmservice.sim.tokenizer import WORD_IDS, WORD_JSON, WORDS, TextGenerator, seed_of

__all__ = ["Engine", "Sequence"]

log = logging.getLogger(__name__)

# Timestamps come from perf_counter: uvloop's loop.time() only has millisecond resolution.
_now = time.perf_counter

# Fall this far behind the virtual clock and the engine stops trying to catch up.
_MAX_LAG_SECONDS = 0.05


@dataclass(eq=False, slots=True)
class Sequence:
    """One request inside the engine, and the hand-off to the handler that serves it."""

    request_id: str
    prompt_ids: list[int]
    max_tokens: int
    # True when the client set max_tokens: reaching it finishes with "length".
    max_tokens_given: bool = True
    stop: tuple[str, ...] = ()
    stream: bool = False
    priority: int = 0
    arrival: float = 0.0
    # Engine state.
    block_names: list[int] = field(default_factory=list)
    cached_tokens: int = 0
    prefilled: int = 0
    words: list[int] = field(default_factory=list)
    scheduled_at: float = 0.0
    first_token_at: float = 0.0
    last_token_at: float = 0.0
    finished_at: float = 0.0
    finish_reason: str | None = None
    stop_reason: str | None = None
    # The last word cut short by a stop string, if any.
    last_text: str | None = None
    tail: str = ""
    generator: TextGenerator = field(default_factory=lambda: TextGenerator(0))
    # Hand-off: JSON-encoded text pieces not yet written, and the handler's waiter.
    pending: list[bytes] = field(default_factory=list)
    waiter: asyncio.Future[None] | None = None

    @property
    def done(self) -> bool:
        return self.finish_reason is not None

    @property
    def prompt_len(self) -> int:
        return len(self.prompt_ids)

    def text(self) -> str:
        """All generated text so far."""
        pieces = [WORDS[i] for i in self.words]
        if self.last_text is not None and pieces:
            pieces[-1] = self.last_text
        return "".join(pieces)

    async def wait(self) -> None:
        """Until there is something to write (streaming) or the sequence is done."""
        if self.done or (self.stream and self.pending):
            return
        waiter = asyncio.get_running_loop().create_future()
        self.waiter = waiter
        await waiter

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)


class Engine:
    """The step loop of one simulated replica."""

    def __init__(self, config: SimConfig, metrics: SimMetrics | None = None) -> None:
        self.config = config
        self.metrics = metrics or SimMetrics(config)
        self.metrics.gauges = self.gauges
        self.cache = PrefixCache(config.cache_blocks)
        self.waiting: deque[Sequence] = deque()
        self.running: dict[int, Sequence] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._clock = 0.0
        self._last_step_end = 0.0

    # Lifecycle.

    def start(self) -> None:
        """Start the step loop on the running event loop (idempotent)."""
        if self._task is None or self._task.done():
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="sim-engine")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        pending = [*self.waiting, *self.running.values()]
        self.waiting.clear()
        self.running.clear()
        for seq in pending:
            self._finish(seq, "abort", _now())

    # Requests.

    def new_sequence(
        self,
        request_id: str,
        prompt_ids: list[int],
        max_tokens: int | None,
        stop: tuple[str, ...] = (),
        stream: bool = False,
        priority: int = 0,
    ) -> Sequence:
        """A sequence sized for this engine; `max_tokens=None` means a natural length."""
        room = self.config.max_model_len - len(prompt_ids)
        seed = seed_of(prompt_ids)
        if max_tokens is None:
            low, high = self.config.natural_output_tokens
            limit, given = min(room, low + seed % (high - low + 1)), False
        else:
            limit, given = min(room, max_tokens), True
        return Sequence(
            request_id=request_id,
            prompt_ids=prompt_ids,
            max_tokens=max(limit, 1),
            max_tokens_given=given,
            stop=stop,
            stream=stream,
            priority=priority,
            generator=TextGenerator(seed),
        )

    def submit(self, seq: Sequence) -> None:
        self.start()
        seq.arrival = _now()
        self.waiting.append(seq)
        self._wake.set()

    def abort(self, seq: Sequence) -> None:
        """Free the sequence now; counted as an aborted request."""
        if seq.done:
            return
        if self.running.pop(id(seq), None) is None:
            with contextlib.suppress(ValueError):
                self.waiting.remove(seq)
        self.metrics.aborted += 1
        self._finish(seq, "abort", _now())

    def gauges(self) -> EngineGauges:
        block = self.config.block_size
        used = sum(-(-(seq.prefilled + len(seq.words)) // block) for seq in self.running.values())
        return EngineGauges(
            running=len(self.running),
            waiting=len(self.waiting),
            kv_cache_usage=min(1.0, used / self.config.cache_blocks),
        )

    # The loop.

    async def _loop(self) -> None:
        while True:
            if not self.running and not self.waiting:
                self._wake.clear()
                await self._wake.wait()
                self._clock = self._last_step_end = _now()
                continue
            try:
                await self._step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("Engine step failed; failing the requests in flight")
                now = _now()
                for seq in [*self.waiting, *self.running.values()]:
                    self._finish(seq, "error", now)
                self.waiting.clear()
                self.running.clear()

    async def _step(self) -> None:
        decoding, prefill_tokens, completed = self._schedule(_now())
        config = self.config
        seconds = config.profile.step_seconds(decoding, prefill_tokens) * config.time_scale
        now = _now()
        if now - self._clock > _MAX_LAG_SECONDS:
            self._clock = now
        self._clock += seconds
        delay = self._clock - now
        await asyncio.sleep(delay if delay > 0 else 0)
        self._emit(_now(), completed)
        m = self.metrics
        m.steps += 1
        m.iteration_tokens.observe(decoding + prefill_tokens)

    def _schedule(self, now: float) -> tuple[int, int, list[Sequence]]:
        """Spend one step's token budget; returns (emitting, prefill tokens, prefills done)."""
        config, m = self.config, self.metrics
        decoding = 0
        prefilling: list[Sequence] = []
        for seq in self.running.values():
            if seq.prefilled >= seq.prompt_len:
                decoding += 1
            else:
                prefilling.append(seq)
        budget = config.max_num_batched_tokens - decoding
        completed: list[Sequence] = []
        for seq in prefilling:
            if budget <= 0:
                break
            budget -= self._prefill_chunk(seq, budget, completed)
        while self.waiting and len(self.running) < config.max_num_seqs and budget > 0:
            seq = self._next_waiting()
            seq.scheduled_at = now
            self._lookup(seq)
            m.prefix_cache_queries += seq.prompt_len
            m.prefix_cache_hits += seq.cached_tokens
            self.running[id(seq)] = seq
            budget -= self._prefill_chunk(seq, budget, completed)
        prefill_tokens = config.max_num_batched_tokens - decoding - budget
        return decoding + len(completed), prefill_tokens, completed

    def _next_waiting(self) -> Sequence:
        if self.config.scheduling_policy != "priority":
            return self.waiting.popleft()
        # min() keeps the first of equals, and the deque is in arrival order.
        seq = min(self.waiting, key=_priority_of)
        self.waiting.remove(seq)
        return seq

    @staticmethod
    def _prefill_chunk(seq: Sequence, budget: int, completed: list[Sequence]) -> int:
        chunk = min(seq.prompt_len - seq.prefilled, budget)
        seq.prefilled += chunk
        if seq.prefilled >= seq.prompt_len:
            completed.append(seq)
        return chunk

    def _lookup(self, seq: Sequence) -> None:
        config = self.config
        seq.block_names = block_hashes(seq.prompt_ids, config.block_size)
        if config.enable_prefix_caching:
            hit_blocks = self.cache.match(seq.block_names)
            seq.cached_tokens = min(hit_blocks * config.block_size, seq.prompt_len - 1)
        seq.prefilled = seq.cached_tokens

    def _emit(self, now: float, completed: list[Sequence]) -> None:
        """The end of a step: every sequence past its prompt gets its next token."""
        m, config = self.metrics, self.config
        if config.enable_prefix_caching:
            for seq in completed:
                if not seq.done:
                    self.cache.insert(seq.block_names)
        decoded = first = 0
        finished: list[tuple[Sequence, str]] = []
        for seq in self.running.values():
            if seq.prefilled < seq.prompt_len:
                continue
            index = seq.generator.next_index()
            seq.words.append(index)
            piece = WORD_JSON[index]
            if len(seq.words) == 1:
                first += 1
                seq.first_token_at = now
                m.ttft.observe(now - seq.arrival)
                m.prompt_tokens += seq.prompt_len
            else:
                decoded += 1
            seq.last_token_at = now
            reason = None
            if seq.stop:
                reason, cut = self._check_stop(seq, WORDS[index])
                if cut is not None:
                    piece = cut
            if reason is None and len(seq.words) >= seq.max_tokens:
                reason = "length" if seq.max_tokens_given else "stop"
            if seq.stream:
                seq.pending.append(piece)
                seq.wake()
            if reason is not None:
                finished.append((seq, reason))
        if decoded:
            m.itl.observe(now - self._last_step_end, decoded)
        m.generation_tokens += decoded + first
        self._last_step_end = now
        for seq, reason in finished:
            del self.running[id(seq)]
            self._finish(seq, reason, now)

    @staticmethod
    def _check_stop(seq: Sequence, word: str) -> tuple[str | None, bytes | None]:
        """Whether a stop string just appeared; if so, the word's text before it."""
        window = max(map(len, seq.stop)) + len(word)
        seq.tail = (seq.tail + word)[-window:]
        for stop in seq.stop:
            pos = seq.tail.find(stop)
            if pos >= 0:
                keep = max(0, pos - (len(seq.tail) - len(word)))
                seq.last_text = word[:keep]
                seq.stop_reason = stop
                return "stop", _json_bytes(seq.last_text)
        return None, None

    def _finish(self, seq: Sequence, reason: str, now: float) -> None:
        if seq.done:
            return
        seq.finish_reason = reason
        seq.finished_at = now
        m = self.metrics
        m.success[reason] = m.success.get(reason, 0) + 1
        if reason not in ("abort", "error"):
            m.e2e.observe(now - seq.arrival)
            m.queue_time.observe(seq.scheduled_at - seq.arrival)
            m.prefill_time.observe(seq.first_token_at - seq.scheduled_at)
            m.decode_time.observe(now - seq.first_token_at)
            m.inference_time.observe(now - seq.scheduled_at)
            m.request_prompt_tokens.observe(seq.prompt_len)
            m.request_generation_tokens.observe(len(seq.words))
            if seq.max_tokens_given:
                m.request_max_tokens.observe(seq.max_tokens)
            if self.config.enable_prefix_caching:
                ids = seq.prompt_ids + [WORD_IDS[i] for i in seq.words]
                self.cache.insert(block_hashes(ids, self.config.block_size))
        seq.wake()


def _priority_of(seq: Sequence) -> int:
    return seq.priority


def _json_bytes(text: str) -> bytes:
    return json.dumps(text).encode()
