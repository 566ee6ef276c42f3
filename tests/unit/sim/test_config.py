"""The simulator starts from the exact arguments the operator renders for vLLM."""

from __future__ import annotations

import pytest

from llmservice.sim.config import DEFAULT_MAX_MODEL_LEN, PROFILES, SimConfig, parse_args

OPERATOR_ARGS = [
    "--model", "meta-llama/Llama-3.1-8B-Instruct",
    "--served-model-name", "chat", "gpt-3.5-turbo", "gpt-4",
    "--max-model-len", "32768",
    "--gpu-memory-utilization", "0.9",
    "--max-num-seqs", "256",
    "--tensor-parallel-size", "2",
    "--dtype", "auto",
    "--quantization", "awq",
    "--hf-overrides",
    '{"rope_scaling": {"rope_type": "yarn", "factor": 4.0, '
    '"original_max_position_embeddings": 8192}}',
    "--host", "0.0.0.0",  # noqa: S104
    "--port", "8000",
]  # fmt: skip


def test_operator_rendered_args() -> None:
    parsed = parse_args(OPERATOR_ARGS)
    config = parsed.config
    assert parsed.ignored == ()
    assert config.model == "meta-llama/Llama-3.1-8B-Instruct"
    assert config.model_names == ("chat", "gpt-3.5-turbo", "gpt-4")
    assert config.served_name == "chat"
    assert config.max_model_len == 32768
    assert config.max_num_seqs == 256
    assert config.tensor_parallel_size == 2
    assert config.quantization == "awq"
    assert config.hf_overrides["rope_scaling"]["factor"] == 4.0
    assert (config.host, config.port) == ("0.0.0.0", 8000)  # noqa: S104


def test_positional_model_and_unknown_flags_with_and_without_values() -> None:
    parsed = parse_args(
        ["Qwen/Qwen2.5-7B", "--trust-remote-code", "--kv-cache-dtype", "fp8", "--port", "9"]
    )
    assert parsed.config.model == "Qwen/Qwen2.5-7B"
    assert parsed.config.model_names == ("Qwen/Qwen2.5-7B",)
    assert parsed.ignored == ("--trust-remote-code", "--kv-cache-dtype", "fp8")
    assert parsed.config.port == 9


def test_rope_scaling_sets_the_default_context_length() -> None:
    rope = '{"rope_scaling": {"factor": 4, "original_max_position_embeddings": 8192}}'
    assert parse_args(["m", "--hf-overrides", rope]).config.max_model_len == 32768
    assert parse_args(["m"]).config.max_model_len == DEFAULT_MAX_MODEL_LEN


@pytest.mark.parametrize(("value", "expected"), [("8192", 8192), ("32k", 32000), ("1M", 10**6)])
def test_human_readable_model_len(value: str, expected: int) -> None:
    assert parse_args(["m", "--max-model-len", value]).config.max_model_len == expected


def test_sim_flags() -> None:
    config = parse_args(
        [
            "m",
            "--sim-profile", "70b-h100x4",
            "--sim-time-scale", "0.5",
            "--sim-cache-blocks", "64",
            "--sim-replica-name", "engine-7",
            "--sim-output-len", "4:8",
            "--no-enable-prefix-caching",
        ]
    ).config  # fmt: skip
    assert config.profile is PROFILES["70b-h100x4"]
    assert config.time_scale == 0.5
    assert config.cache_blocks == 64
    assert config.replica_name == "engine-7"
    assert config.natural_output_tokens == (4, 8)
    assert config.enable_prefix_caching is False


def test_replica_name_defaults_to_pod_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POD_NAME", "chat-engine-abc12")
    assert parse_args(["m"]).config.replica_name == "chat-engine-abc12"
    assert SimConfig().replica_name == "chat-engine-abc12"


@pytest.mark.parametrize(
    "args",
    [
        ["m", "--hf-overrides", "{not json"],
        ["m", "--max-num-seqs", "many"],
        ["m", "--max-num-seqs", "0"],
        ["m", "--sim-profile", "nope"],
    ],
)
def test_bad_values_of_known_flags_exit(args: list[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(args)


def test_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="max_num_seqs"):
        SimConfig(max_num_seqs=0)
    with pytest.raises(ValueError, match="time_scale"):
        SimConfig(time_scale=-1)
