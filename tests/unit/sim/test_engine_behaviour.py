"""Engine behaviour on real sockets: prefix cache, waiting queue, aborts on disconnect.

Assertions use counters and gauges where they can. Where wall time matters (time to first
token), the timing profile builds in a wide margin: an uncached prompt sleeps at least
0.6 s of prefill, a cached one about 1 ms, and the test only asks for a 2x difference.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from contextlib import ExitStack

import httpx

from llmservice.sim import SimServer, TimingProfile

from .conftest import fast_config, sample, scrape

SLOW_PREFILL = TimingProfile("test-slow-prefill", 0.001, 0.0, 0.0, 0.0005)


def _wait_for(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


def _ttft(client: httpx.Client, prompt: str) -> float:
    body = {"model": "llama", "prompt": prompt, "max_tokens": 2, "stream": True}
    start = time.perf_counter()
    with client.stream("POST", "/v1/completions", json=body) as r:
        for line in r.iter_lines():
            if line.startswith("data: {"):
                return time.perf_counter() - start
    raise AssertionError("no token streamed")


def test_repeated_prefix_hits_the_cache_and_lowers_ttft() -> None:
    prompt = "shared system prompt " * 400  # 1,200 tokens
    with (
        SimServer(fast_config(profile=SLOW_PREFILL)) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        cold = _ttft(client, prompt)
        before = scrape(client)
        warm = _ttft(client, prompt)
        after = scrape(client)
    hits = sample(after, "vllm:prefix_cache_hits_total") - sample(
        before, "vllm:prefix_cache_hits_total"
    )
    queries = sample(after, "vllm:prefix_cache_queries_total") - sample(
        before, "vllm:prefix_cache_queries_total"
    )
    assert queries > 1000
    assert hits >= queries - 16  # all full blocks but the last token's
    assert cold >= 0.6
    assert warm < cold / 2


def test_prefix_caching_can_be_disabled() -> None:
    with (
        SimServer(fast_config(enable_prefix_caching=False)) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        for _ in range(2):
            client.post("/v1/completions", json={"prompt": "same " * 100, "max_tokens": 1})
        assert sample(scrape(client), "vllm:prefix_cache_hits_total") == 0


def test_requests_beyond_max_num_seqs_wait() -> None:
    slow_decode = TimingProfile("test-slow-decode", 0.02, 0.0, 0.0, 0.0)
    config = fast_config(profile=slow_decode, max_num_seqs=2)
    body = {"model": "llama", "prompt": "wait your turn", "max_tokens": 1000, "stream": True}
    with (
        SimServer(config) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
        ExitStack() as streams,
    ):
        for _ in range(4):
            streams.enter_context(client.stream("POST", "/v1/completions", json=body))

        def gauges() -> tuple[float, float]:
            s = scrape(client)
            return sample(s, "vllm:num_requests_running"), sample(s, "vllm:num_requests_waiting")

        _wait_for(lambda: gauges() == (2.0, 2.0))
        assert server.app.engine.gauges().kv_cache_usage > 0
        streams.close()
        _wait_for(lambda: gauges() == (0.0, 0.0))
        assert sample(scrape(client), "llmservice_sim_aborted_requests_total") == 4


def test_client_disconnect_aborts_the_sequence() -> None:
    slow_decode = TimingProfile("test-slow-decode", 0.01, 0.0, 0.0, 0.0)
    with (
        SimServer(fast_config(profile=slow_decode)) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        payload = b'{"prompt": "bye", "max_tokens": 3000, "stream": true}'
        request = (
            b"POST /v1/completions HTTP/1.1\r\nhost: sim\r\ncontent-type: application/json\r\n"
            b"content-length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload
        )
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(request)
            received = b""
            while received.count(b"data: {") < 3:
                received += sock.recv(65536)
            assert server.app.engine.gauges().running == 1
        _wait_for(lambda: server.app.metrics.aborted == 1)
        s = scrape(client)
        assert sample(s, "vllm:num_requests_running") == 0
        assert sample(s, "vllm:request_success_total", finished_reason="abort") == 1
        assert sample(s, "llmservice_sim_aborted_requests_total") == 1
        # The engine goes idle: after the step in flight, no more steps once nothing runs.
        time.sleep(0.2)
        steps = server.app.metrics.steps
        time.sleep(0.2)
        assert server.app.metrics.steps == steps


def test_non_streaming_disconnect_aborts_too() -> None:
    slow_decode = TimingProfile("test-slow-decode", 0.01, 0.0, 0.0, 0.0)
    with (
        SimServer(fast_config(profile=slow_decode)) as server,
        httpx.Client(base_url=server.url, timeout=0.3) as client,
    ):
        try:
            client.post("/v1/completions", json={"prompt": "x", "max_tokens": 3000})
        except httpx.ReadTimeout:
            pass
        else:
            raise AssertionError("expected the client to give up first")
        _wait_for(lambda: server.app.metrics.aborted == 1)
        assert server.app.engine.gauges().running == 0


def test_a_conversation_reuses_the_previous_turn() -> None:
    history = [
        {"role": "system", "content": "You are terse. " * 40},
        {"role": "user", "content": "First question about caches?"},
    ]
    with (
        SimServer(fast_config()) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        first = client.post("/v1/chat/completions", json={"messages": history, "max_tokens": 8})
        answer = first.json()["choices"][0]["message"]["content"]
        prompt_tokens = first.json()["usage"]["prompt_tokens"]
        before = sample(scrape(client), "vllm:prefix_cache_hits_total")
        history += [
            {"role": "assistant", "content": answer},
            {"role": "user", "content": "And a follow-up?"},
        ]
        client.post("/v1/chat/completions", json={"messages": history, "max_tokens": 8})
        hits = sample(scrape(client), "vllm:prefix_cache_hits_total") - before
    # Every full block of the first prompt is reused (its last partial block cannot be).
    assert hits >= prompt_tokens - 16
