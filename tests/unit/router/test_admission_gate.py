"""The throughput gate, on an injected clock, and reading the engine's metrics."""

from __future__ import annotations

import pytest

from llmservice.router.admission import EngineSample, ThroughputGate, parse_engine_metrics

VLLM_METRICS = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="llama"} 3.0
vllm:num_requests_running{engine="1",model_name="llama"} 1.0
# HELP vllm:generation_tokens_total Number of generation tokens processed.
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{engine="0",model_name="llama"} 1200.0
vllm:generation_tokens_total{engine="1",model_name="llama"} 34.0
vllm:generation_tokens_created{engine="0",model_name="llama"} 1.7e9
vllm:num_requests_running_extra 99
"""


def test_engine_metrics_are_summed_over_their_label_sets() -> None:
    assert parse_engine_metrics(VLLM_METRICS) == EngineSample(1234.0, 4.0)
    plain = "vllm:generation_tokens_total 5\nvllm:num_requests_running 2 1700000000\n"
    assert parse_engine_metrics(plain) == EngineSample(5.0, 2.0)


def test_metrics_without_both_series_say_nothing() -> None:
    assert parse_engine_metrics("vllm:num_requests_running 1\n") is None
    assert parse_engine_metrics("<html>not metrics</html>") is None


def test_a_replica_closes_below_the_floor_and_opens_when_it_recovers() -> None:
    gate = ThroughputGate(min_tokens_per_second=20)
    assert not gate.observe("r", 0.0, EngineSample(0, 4))
    # 4 running requests sharing 200 tokens/s: 50 each.
    assert not gate.observe("r", 1.0, EngineSample(200, 4))
    assert not gate.closed("r")
    assert gate.rate("r") == pytest.approx(50)
    # 10 running sharing 150 tokens/s: 15 each, below 20.
    assert gate.observe("r", 2.0, EngineSample(350, 10))
    assert gate.closed("r")
    assert not gate.observe("r", 3.0, EngineSample(500, 10))  # still 15: no change
    # Requests finished: 5 running at 125 tokens/s is 25 each.
    assert gate.observe("r", 4.0, EngineSample(625, 5))
    assert not gate.closed("r")


def test_an_open_replica_takes_what_keeps_its_requests_at_the_floor() -> None:
    gate = ThroughputGate(min_tokens_per_second=20)
    gate.observe("r", 0.0, EngineSample(0, 2))
    assert gate.allowance("r") is None  # nothing measured yet
    # 2 running share 200 tokens/s: ten requests would still get 20 each, so 8 more.
    gate.observe("r", 1.0, EngineSample(200, 2))
    assert gate.allowance("r") == 8
    gate.observe("r", 2.0, EngineSample(350, 10))  # 15 each: closed
    assert gate.allowance("r") == 0
    # Nothing running: open for what the last measured throughput (150/s) carries.
    gate.observe("r", 3.0, EngineSample(350, 0))
    assert gate.allowance("r") == 7
    # Just at the floor: still one, or the replica would never be probed again.
    gate.observe("r", 4.0, EngineSample(370, 1))
    assert gate.allowance("r") == 1


def test_a_replica_with_nothing_running_is_open() -> None:
    gate = ThroughputGate(min_tokens_per_second=20)
    gate.observe("r", 0.0, EngineSample(0, 8))
    assert gate.observe("r", 1.0, EngineSample(8, 8))
    assert gate.observe("r", 2.0, EngineSample(8, 0))
    assert not gate.closed("r")
    assert gate.rate("r") is None


def test_a_restarted_engine_starts_a_new_baseline() -> None:
    gate = ThroughputGate(min_tokens_per_second=20)
    gate.observe("r", 0.0, EngineSample(10_000, 1))
    assert not gate.observe("r", 1.0, EngineSample(5, 1))  # counter went back: no verdict
    assert not gate.closed("r")
    assert gate.observe("r", 2.0, EngineSample(10, 1))  # 5 tokens/s from the new baseline
    assert gate.closed("r")


def test_replicas_are_independent_and_forgotten_when_they_leave() -> None:
    gate = ThroughputGate(min_tokens_per_second=20)
    for name, produced in (("slow", 10), ("fast", 100)):
        gate.observe(name, 0.0, EngineSample(0, 1))
        gate.observe(name, 1.0, EngineSample(produced, 1))
    assert gate.closed("slow")
    assert not gate.closed("fast")
    assert gate.forget("slow")
    assert not gate.forget("fast")
    assert not gate.closed("slow")


def test_the_floor_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        ThroughputGate(0)
