"""The routing-quality bench: its workload is deterministic, and its figures add up."""

from __future__ import annotations

import asyncio
import itertools
import json
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from bench.chat_workload import Workload, WorkloadSpec, build, messages
from bench.routing_bench import (
    TARGETS,
    Result,
    SimSettings,
    counters,
    digest,
    drive,
    live_spread,
    measure,
    medians_table,
    moves,
    parse_args,
    quality_table,
    router_for,
    summarize,
    variant,
)

from llmservice.sim import SimConfig, SimServer, TimingProfile
from llmservice.sim.tokenizer import render_chat, tokenize

SMALL = WorkloadSpec(
    sessions=6,
    seed=3,
    session_rate=200.0,
    system_prompts=2,
    system_tokens=(40, 60),
    turns=(2, 4),
    user_tokens=(5, 12),
    reply_tokens=(3, 9),
    think_mean=0.001,
    think_clip=(0.0, 0.002),
)


def test_the_workload_is_a_function_of_its_spec() -> None:
    assert build(WorkloadSpec()) == build(WorkloadSpec())
    assert build(WorkloadSpec(seed=8)) != build(WorkloadSpec())
    workload = build(WorkloadSpec())
    ids = [s.session_id for s in workload.sessions]
    assert len(set(ids)) == len(ids) == WorkloadSpec.sessions
    starts = [s.start for s in workload.sessions]
    assert starts == sorted(starts)
    # A few system prompts, each shared by many sessions, the first the most popular.
    used = [sum(s.system == i for s in workload.sessions) for i in range(5)]
    assert used[0] == max(used)
    assert min(used) > 0


def test_token_counts_and_think_times_stay_in_their_ranges() -> None:
    spec = WorkloadSpec(sessions=50)
    workload = build(spec)
    for prompt in workload.system_prompts:
        # "System N:" is three tokens, then one token per word.
        assert spec.system_tokens[0] <= len(tokenize(prompt)) - 3 <= spec.system_tokens[1]
    for session in workload.sessions:
        assert spec.turns[0] <= len(session.turns) <= spec.turns[1]
        assert session.turns[0].think == 0
        for turn in session.turns:
            assert spec.user_tokens[0] <= len(tokenize(turn.user)) <= spec.user_tokens[1]
            assert spec.reply_tokens[0] <= turn.max_tokens <= spec.reply_tokens[1]
        for turn in session.turns[1:]:
            assert spec.think_clip[0] <= turn.think <= spec.think_clip[1]


def test_each_turn_extends_the_previous_prompt() -> None:
    workload = build(SMALL)
    session = max(workload.sessions, key=lambda s: len(s.turns))
    replies = [f"reply {n}" for n in range(len(session.turns))]
    previous = ""
    for turn in range(len(session.turns)):
        prompt = render_chat(messages(workload, session, turn, replies))
        # The previous prompt up to its final assistant marker is a prefix of this one.
        assert prompt.startswith(previous.removesuffix("<|assistant|>\n"))
        assert len(prompt) > len(previous)
        previous = prompt


def test_the_table_math() -> None:
    results = [
        Result(0, 0, True, 0.010, 1.0, "a"),
        Result(0, 1, True, 0.020, 2.0, "a"),
        Result(0, 2, True, 0.030, 3.0, "b"),  # a move
        Result(1, 0, False, None, 0.5, None),  # an error: neither a move nor a latency
        Result(1, 1, True, 0.040, 4.0, "c"),
        Result(1, 2, True, 0.050, 5.0, "a"),  # a move
    ]
    zero = dict.fromkeys(
        ("vllm:prefix_cache_queries_total", "vllm:prefix_cache_hits_total", "requests"), 0.0
    )
    before = [dict(zero, requests=1.0), dict(zero), dict(zero)]
    after = [
        {"vllm:prefix_cache_queries_total": 600.0, "vllm:prefix_cache_hits_total": 300.0,
         "requests": 4.0},
        {"vllm:prefix_cache_queries_total": 200.0, "vllm:prefix_cache_hits_total": 100.0,
         "requests": 1.0},
        {"vllm:prefix_cache_queries_total": 200.0, "vllm:prefix_cache_hits_total": 0.0,
         "requests": 1.0},
    ]  # fmt: skip
    row = summarize("t", results, before, after, (1.5, 2.5))
    assert row.hit_rate == pytest.approx(400 / 1000)
    assert row.prefill_tokens == 600
    assert row.per_replica == [3, 1, 1]
    assert row.share == pytest.approx(3 / (5 / 3))
    assert row.moves == moves(results) == 2
    assert row.errors == 1
    assert row.requests == 6
    assert row.ttft_p50_ms == pytest.approx(30.0)
    assert row.ttft_p99_ms == pytest.approx(50.0)
    assert row.e2e_p99_ms == pytest.approx(5000.0)
    line = quality_table([row]).splitlines()[-1]
    assert line == "| t | 0.400 | 600 | 30 | 50 | 5000 | 1.80 | 2 | 1 | 1.50 / 2.50 |"
    # Repeated rounds: the median per target, and the range.
    rounds = [replace(row, ttft_p99_ms=p99, moves=n) for p99, n in ((50, 2), (90, 4), (70, 3))]
    other = replace(row, label="u")
    lines = medians_table([rounds[0], other, rounds[1], rounds[2]]).splitlines()
    assert lines[2] == (
        "| t | 3 | 0.400 [0.400-0.400] | 30 [30-30] | 70 [50-90] | 5000 [5000-5000] "
        "| 1.80 [1.80-1.80] | 3 [2-4] | 1.0 [1.0-1.0] |"
    )
    assert lines[3].startswith("| u | 1 |")


def test_live_spread_counts_conversations_under_way_on_their_latest_replica() -> None:
    def turn(session: int, number: int, replica: str, started: float, e2e: float) -> Result:
        return Result(session, number, True, 0.01, e2e, replica, started)

    results = [
        turn(0, 0, "a", 0.0, 1.0),
        turn(0, 1, "a", 2.0, 1.0),  # under way on "a" from 0 to 3, between its turns too
        turn(1, 0, "a", 0.0, 4.0),  # on "a" from 0 to 4
        turn(2, 0, "b", 1.0, 1.0),  # on "b" from 1 to 2
        Result(3, 0, False, None, 0.5, None, 0.0),  # no answer: on no replica
    ]
    # Samples at 0, 1, 2, 3, 4: a-b = 2-0, 2-1, 2-1, 2-0, 1-0.
    assert live_spread(results, step=1.0) == pytest.approx(7 / 5)
    # A session that moves counts on its new replica from its turn's start.
    moved = [turn(0, 0, "a", 0.0, 1.0), turn(0, 1, "b", 1.5, 1.0), turn(1, 0, "b", 0.0, 3.0)]
    # Samples at 0, 1, 2, 3: a-b = 1-1, 1-1, 0-2, 0-1.
    assert live_spread(moved, step=1.0) == pytest.approx(3 / 4)
    assert live_spread([]) == 0.0


def test_moves_follow_turn_order_not_completion_order() -> None:
    results = [Result(0, 2, True, 0.1, 1, "a"), Result(0, 0, True, 0.1, 1, "a"),
               Result(0, 1, True, 0.1, 1, "b")]  # fmt: skip
    assert moves(results) == 2


def test_turns_are_spread_over_the_routers_the_same_way_every_run() -> None:
    workload = build(SMALL)
    picks = [router_for(s, turn, 2) for s in workload.sessions for turn in range(len(s.turns))]
    assert set(picks) == {0, 1}
    assert picks == [
        router_for(s, turn, 2) for s in workload.sessions for turn in range(len(s.turns))
    ]
    assert {router_for(s, 0, 1) for s in workload.sessions} == {0}


def _hand_overs(workload: Workload, spread: str) -> list[int]:
    """Per conversation, how many times its next turn goes to the other of two routers."""
    counts = []
    for s in workload.sessions:
        picks = [router_for(s, turn, 2, spread) for turn in range(len(s.turns))]
        counts.append(sum(a != b for a, b in itertools.pairwise(picks)))
    return counts


def test_turn_spread_draws_each_turn_handover_moves_a_conversation_once_at_most() -> None:
    workload = build(WorkloadSpec(sessions=200))
    drawn = _hand_overs(workload, "turn")
    assert max(drawn) >= 3
    assert sum(drawn) > 0.4 * sum(len(s.turns) - 1 for s in workload.sessions)
    assert max(_hand_overs(workload, "handover")) == 1


FAST = TimingProfile("bench-test", 0.0005, 0.0, 0.0, 0.00001)


def run_on_fresh_sim(
    workload_spec: WorkloadSpec,
) -> tuple[list[Result], list[list[str]], dict[str, float]]:
    config = SimConfig(model="m", profile=FAST, replica_name="replica-0", cache_blocks=4096)
    with SimServer(config) as sim:
        results, transcript = asyncio.run(drive([sim.url], build(workload_spec), header=True))
        return results, transcript, counters(httpx.get(sim.url + "/metrics").text)


def test_a_run_reads_the_simulators_counters_and_replays_the_same_conversations() -> None:
    workload = build(SMALL)
    results, transcript, after = run_on_fresh_sim(SMALL)
    assert all(r.ok and r.replica == "replica-0" for r in results)
    assert all(r.ttft is not None and 0 < r.ttft <= r.e2e for r in results)
    assert len(results) == workload.requests == after["requests"]
    # Each reply is what the engine generated: max_tokens words, one token each.
    for session, replies in zip(workload.sessions, transcript, strict=True):
        assert [len(tokenize(r)) for r in replies] == [t.max_tokens for t in session.turns]
    # Later turns find their conversation in the cache.
    assert 0 < after["vllm:prefix_cache_hits_total"] < after["vllm:prefix_cache_queries_total"]
    assert moves(results) == 0
    # The same spec on another fresh replica: the same conversations, word for word.
    _, again, _ = run_on_fresh_sim(SMALL)
    assert digest(again) == digest(transcript)
    _, other, _ = run_on_fresh_sim(replace(SMALL, seed=4))
    assert digest(other) != digest(transcript)


@pytest.mark.parametrize(("key", "routers"), [("session", 1), ("round-robin", 1), ("session", 2)])
def test_a_target_end_to_end_through_our_router(key: str, routers: int, tmp_path: Path) -> None:
    """Real simulator and router processes, as the bench starts them, on a tiny workload."""
    args = parse_args(["--replicas", "2", "--sim-profile", "instant", "--routers", str(routers)])
    workload = build(SMALL)
    settings = SimSettings("instant", 4096, 16, 4096)
    dump = tmp_path / "turns" / f"{key}.jsonl"
    row = measure(TARGETS[key], workload, settings, args, tmp_path, dump)
    assert row.errors == 0
    turns = [json.loads(line) for line in dump.read_text().splitlines()]
    assert len(turns) == workload.requests
    assert all(turn["ok"] and turn["replica"] and turn["started"] >= 0 for turn in turns)
    assert row.requests == workload.requests == sum(row.per_replica)
    assert 0 < row.hit_rate < 1
    assert row.ttft_p50_ms > 0
    assert row.digest == digest(run_on_fresh_sim(SMALL)[1])
    if key == "round-robin":
        assert max(row.per_replica) - min(row.per_replica) <= 1
        assert row.moves > 0


def test_a_variant_is_the_session_target_with_its_own_flags(tmp_path: Path) -> None:
    """The flags reach that target's router alone: a later --strategy wins in argparse, so
    a variant that sets RoundRobin spreads every conversation's turns."""
    rr = variant("rr=--strategy=RoundRobin,--load-bound=1.5")
    assert rr.key == "session-rr"
    assert rr.flags == ("--strategy=RoundRobin", "--load-bound=1.5")
    assert rr.session_header
    assert rr.router == "llmservice"
    assert TARGETS["session"].flags == ()
    args = parse_args(["--replicas", "2", "--sim-profile", "instant"])
    row = measure(rr, build(SMALL), SimSettings("instant", 4096, 16, 4096), args, tmp_path, None)
    assert row.errors == 0
    assert max(row.per_replica) - min(row.per_replica) <= 1
    assert row.moves > 0


@pytest.mark.parametrize("spec", ["lb4", "=--load-bound=4", "lb4="])
def test_a_variant_without_a_name_or_flags_is_refused(spec: str) -> None:
    with pytest.raises(SystemExit, match="NAME=FLAGS"):
        variant(spec)
