"""vLLM's request `priority` and `--scheduling-policy priority`, on real sockets."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from llmservice.sim import SimServer, TimingProfile
from llmservice.sim.config import parse_args

from .conftest import fast_config, sample, scrape

SLOW_DECODE = TimingProfile("test-slow-decode", 0.01, 0.0, 0.0, 0.0)


def test_the_flag_is_parsed_not_ignored() -> None:
    parsed = parse_args(["--model", "m", "--scheduling-policy", "priority"])
    assert parsed.config.scheduling_policy == "priority"
    assert parsed.ignored == ()
    assert parse_args(["--model", "m"]).config.scheduling_policy == "fcfs"
    with pytest.raises(SystemExit):
        parse_args(["--model", "m", "--scheduling-policy", "lifo"])


def test_a_priority_without_the_priority_policy_is_refused_as_vllm_does() -> None:
    with (
        SimServer(fast_config()) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        body = {"model": "llama", "prompt": "hi", "max_tokens": 1}
        assert client.post("/v1/completions", json={**body, "priority": 0}).status_code == 200
        refused = client.post("/v1/completions", json={**body, "priority": -3})
        assert refused.status_code == 400
        assert refused.json()["error"]["message"] == (
            "Got priority -3 but Priority scheduling is not enabled."
        )
        wrong = client.post("/v1/completions", json={**body, "priority": "high"})
        assert wrong.status_code == 400


def test_lower_priority_values_are_served_first_and_equals_in_arrival_order() -> None:
    config = fast_config(profile=SLOW_DECODE, max_num_seqs=1, scheduling_policy="priority")
    with (
        SimServer(config) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
        ThreadPoolExecutor(max_workers=6) as pool,
    ):
        finished: list[str] = []

        def complete(name: str, priority: int, tokens: int) -> None:
            body = {"model": "llama", "prompt": name, "max_tokens": tokens, "priority": priority}
            with httpx.Client(base_url=server.url, timeout=30) as own:
                assert own.post("/v1/completions", json=body).status_code == 200
            finished.append(name)

        def waiting() -> float:
            return sample(scrape(client), "vllm:num_requests_waiting")

        # Three seconds of decoding: the four others must all be queued before it ends,
        # which takes a few client threads and scrapes, slow on a loaded machine.
        blocker = pool.submit(complete, "blocker", 0, 300)
        deadline = time.monotonic() + 10
        while sample(scrape(client), "vllm:num_requests_running") < 1:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        jobs = []
        for waited, (name, priority) in enumerate(
            [("late-5", 5), ("first-1", 1), ("then-3", 3), ("also-1", 1)], start=1
        ):
            jobs.append(pool.submit(complete, name, priority, 1))
            while waiting() < waited:  # queued in this order
                assert time.monotonic() < deadline
                time.sleep(0.01)
        for job in [blocker, *jobs]:
            job.result(timeout=30)
        assert finished == ["blocker", "first-1", "also-1", "then-3", "late-5"]
