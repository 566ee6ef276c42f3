"""router_bench's ratio table: each run's CPU figures over the reference's of that run."""

from __future__ import annotations

from bench.router_bench import Sample, paired_ratios


def test_the_ratios_pair_each_run_with_the_reference_of_the_same_run() -> None:
    reference = Sample(
        cpu_per_request_us=[100.0, 50.0, 80.0],
        cpu_per_chunk_us=[20.0, 10.0, 16.0],
        cpu_per_chat_ms=[1.0, 2.0, 1.0],
    )
    # Twice as slow in the second run, as the reference: the ratio does not move.
    other = Sample(
        cpu_per_request_us=[90.0, 45.0, 88.0],
        cpu_per_chunk_us=[22.0, 11.0, 16.0],
        cpu_per_chat_ms=[0.9, 2.2, 1.0],
    )
    direct = Sample(rate=[1.0, 1.0, 1.0])  # no CPU figures: no row
    rows = paired_ratios({"direct": direct, "vr": reference, "other": other}, "vr").splitlines()
    assert rows[0] == ("| target | CPU per request / vr | per chunk / vr | per chat stream / vr |")
    assert rows[2:] == [
        "| other | 0.900 [0.900-1.100] | 1.100 [1.000-1.100] | 1.000 [0.900-1.100] |"
    ]
