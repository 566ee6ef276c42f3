"""Simulator settings: timing profiles, the config value object, and vLLM-style flags.

`parse_args()` accepts the arguments `vllm serve` accepts, so the container args the
operator renders for an engine Pod start the simulator unchanged:

    llmservice sim [MODEL] --model M --served-model-name NAME ALIAS ... --max-model-len 8192 \\
        --gpu-memory-utilization 0.9 --max-num-seqs 256 --tensor-parallel-size 2 \\
        --dtype auto --quantization awq --hf-overrides '{"rope_scaling": {...}}' \\
        --scheduling-policy priority --otlp-traces-endpoint URL \\
        --host 0.0.0.0 --port 8000

vLLM flags the simulator does not model are accepted (with or without a value) and
returned in `ParsedArgs.ignored`, so the caller can report them once; they are never fatal.
Flags that exist only in the simulator start with `--sim-`.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = [
    "DEFAULT_MAX_MODEL_LEN",
    "PROFILES",
    "ParsedArgs",
    "SimConfig",
    "TimingProfile",
    "parse_args",
]

DEFAULT_MAX_MODEL_LEN = 8192
DEFAULT_MAX_NUM_SEQS = 256
DEFAULT_MAX_NUM_BATCHED_TOKENS = 8192
DEFAULT_BLOCK_SIZE = 16
DEFAULT_CACHE_BLOCKS = 16384
SCHEDULING_POLICIES = ("fcfs", "priority")


@dataclass(frozen=True)
class TimingProfile:
    """How long one engine step takes; every figure is in seconds of model time.

    A step that decodes `d` running sequences and prefills `p` prompt tokens lasts
    `decode_base + decode_per_seq * d + (prefill_overhead if p else 0) + prefill_per_token * p`.
    Cached prompt tokens are not prefilled, so they cost nothing: that is what makes time to
    first token depend on the prefix cache.
    """

    name: str
    decode_base: float
    decode_per_seq: float
    prefill_overhead: float
    prefill_per_token: float

    def step_seconds(self, decoding: int, prefill_tokens: int) -> float:
        seconds = self.decode_base + self.decode_per_seq * decoding
        if prefill_tokens:
            seconds += self.prefill_overhead + self.prefill_per_token * prefill_tokens
        return seconds


# Rough public figures for bf16 weights; good enough to give routers realistic shapes.
PROFILES: dict[str, TimingProfile] = {
    p.name: p
    for p in (
        # Llama-3-8B on one H100: ~8 ms per decode step, ~15k prefill tokens/s.
        TimingProfile("8b-h100", 0.008, 0.00004, 0.010, 0.000065),
        # Llama-3-70B on four H100s (tensor parallel 4).
        TimingProfile("70b-h100x4", 0.022, 0.00010, 0.030, 0.00025),
        # A small model on one L4.
        TimingProfile("1b-l4", 0.006, 0.00002, 0.005, 0.00004),
        # No model time at all: the server runs as fast as the CPU lets it (benchmarks).
        TimingProfile("instant", 0.0, 0.0, 0.0, 0.0),
    )
}
DEFAULT_PROFILE = "8b-h100"


def _default_replica_name() -> str:
    return os.environ.get("POD_NAME") or socket.gethostname()


@dataclass(frozen=True)
class SimConfig:
    """Everything one simulated vLLM replica needs; build it directly or with `parse_args`."""

    model: str = "sim-model"
    served_model_names: tuple[str, ...] = ()
    max_model_len: int = DEFAULT_MAX_MODEL_LEN
    max_num_seqs: int = DEFAULT_MAX_NUM_SEQS
    max_num_batched_tokens: int = DEFAULT_MAX_NUM_BATCHED_TOKENS
    block_size: int = DEFAULT_BLOCK_SIZE
    enable_prefix_caching: bool = True
    gpu_memory_utilization: float = 0.9
    tensor_parallel_size: int = 1
    dtype: str = "auto"
    quantization: str | None = None
    hf_overrides: dict[str, Any] = field(default_factory=dict)
    api_key: str | None = None
    # vLLM's --scheduling-policy: "fcfs", or "priority" (lower `priority` values first).
    scheduling_policy: str = "fcfs"
    # vLLM's --otlp-traces-endpoint: an OTLP/HTTP URL for the `llm_request` spans.
    otlp_traces_endpoint: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    # Simulator-only settings.
    profile: TimingProfile = PROFILES[DEFAULT_PROFILE]
    time_scale: float = 1.0
    cache_blocks: int = DEFAULT_CACHE_BLOCKS
    replica_name: str = field(default_factory=_default_replica_name)
    # Length of an answer when the request gives no max_tokens (chosen per prompt).
    natural_output_tokens: tuple[int, int] = (16, 128)
    access_log: bool = False

    def __post_init__(self) -> None:
        checks = [
            (self.max_model_len >= 1, "max_model_len must be at least 1"),
            (self.max_num_seqs >= 1, "max_num_seqs must be at least 1"),
            (self.max_num_batched_tokens >= 1, "max_num_batched_tokens must be at least 1"),
            (self.block_size >= 1, "block_size must be at least 1"),
            (self.cache_blocks >= 1, "cache_blocks must be at least 1"),
            (self.time_scale >= 0, "time_scale must not be negative"),
            (
                self.scheduling_policy in SCHEDULING_POLICIES,
                "scheduling_policy must be one of " + ", ".join(SCHEDULING_POLICIES),
            ),
            (
                1 <= self.natural_output_tokens[0] <= self.natural_output_tokens[1],
                "natural_output_tokens must be (low, high) with 1 <= low <= high",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    @property
    def model_names(self) -> tuple[str, ...]:
        """The names requests may use; the first one is reported in responses and metrics."""
        return self.served_model_names or (self.model,)

    @property
    def served_name(self) -> str:
        return self.model_names[0]

    def with_overrides(self, **changes: Any) -> SimConfig:
        return replace(self, **changes)


@dataclass(frozen=True)
class ParsedArgs:
    config: SimConfig
    ignored: tuple[str, ...]
    port_file: str | None = None


def _model_len(value: str) -> int:
    """vLLM accepts `8192`, `32k`, `1m` (and `32K`, `1M`)."""
    text = value.strip().lower()
    scale = {"k": 1000, "m": 1_000_000}.get(text[-1:], 1)
    if scale != 1:
        text = text[:-1]
    try:
        return int(float(text) * scale)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid model length {value!r}") from None


def _json_object(value: str) -> dict[str, Any]:
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    return parsed


def _output_range(value: str) -> tuple[int, int]:
    low, _, high = value.partition(":")
    try:
        return int(low), int(high or low)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW:HIGH, got {value!r}") from None


def _rope_max_len(hf_overrides: dict[str, Any]) -> int | None:
    """The context length RoPE scaling gives, when the overrides say enough to know it."""
    rope = hf_overrides.get("rope_scaling")
    if not isinstance(rope, dict):
        return None
    factor = rope.get("factor")
    original = rope.get("original_max_position_embeddings")
    if isinstance(factor, int | float) and isinstance(original, int):
        return int(original * factor)
    return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llmservice sim",
        description="A vLLM stand-in: the same OpenAI API, metrics and flags, no GPU.",
        epilog="Unknown vLLM flags are accepted and reported once at start.",
    )
    add = parser.add_argument
    # vLLM flags the simulator models.
    add("--model", help="model name or path (also accepted as the first positional argument)")
    add("--served-model-name", nargs="+", help="names clients may use; the first is reported")
    add("--max-model-len", type=_model_len, help="context length (prompt plus output)")
    add("--max-num-seqs", type=int, default=DEFAULT_MAX_NUM_SEQS)
    add("--max-num-batched-tokens", type=int, default=DEFAULT_MAX_NUM_BATCHED_TOKENS)
    add("--block-size", type=int, default=DEFAULT_BLOCK_SIZE)
    add("--enable-prefix-caching", action=argparse.BooleanOptionalAction, default=True)
    add("--num-gpu-blocks-override", type=int, help="KV cache size in blocks")
    add("--gpu-memory-utilization", type=float, default=0.9)
    add("--tensor-parallel-size", "-tp", type=int, default=1)
    add("--dtype", default="auto")
    add("--quantization", "-q")
    add("--hf-overrides", type=_json_object, default={})
    add("--scheduling-policy", choices=SCHEDULING_POLICIES, default="fcfs")
    add("--otlp-traces-endpoint", help="export an llm_request span per request (OTLP/HTTP)")
    add("--api-key", default=os.environ.get("VLLM_API_KEY"))
    add("--host", default="127.0.0.1")
    add("--port", type=int, default=8000)
    # Simulator-only flags.
    add("--sim-profile", choices=sorted(PROFILES), default=DEFAULT_PROFILE)
    add("--sim-time-scale", type=float, default=1.0, help="multiplies all model time")
    add("--sim-cache-blocks", type=int, help="prefix cache size in blocks")
    add("--sim-replica-name", help="x-inference-pod header (default: $POD_NAME or hostname)")
    add("--sim-output-len", type=_output_range, default=(16, 128), metavar="LOW:HIGH")
    add("--sim-port-file", help="write the bound port to this file once listening")
    add("--sim-access-log", action="store_true", help="log one line per request")
    return parser


def parse_args(argv: list[str]) -> ParsedArgs:
    """Parse `vllm serve`-style arguments into a `SimConfig`.

    Raises SystemExit (from argparse) only for flags the simulator knows given bad values.
    """
    argv = list(argv)
    positional_model = None
    if argv and not argv[0].startswith("-"):
        positional_model = argv.pop(0)
    ns, ignored = build_parser().parse_known_args(argv)
    model = ns.model or positional_model or "sim-model"
    hf_overrides: dict[str, Any] = ns.hf_overrides
    max_model_len = ns.max_model_len or _rope_max_len(hf_overrides) or DEFAULT_MAX_MODEL_LEN
    cache_blocks = ns.sim_cache_blocks or ns.num_gpu_blocks_override or DEFAULT_CACHE_BLOCKS
    try:
        config = SimConfig(
            model=model,
            served_model_names=tuple(ns.served_model_name or ()),
            max_model_len=max_model_len,
            max_num_seqs=ns.max_num_seqs,
            max_num_batched_tokens=ns.max_num_batched_tokens,
            block_size=ns.block_size,
            enable_prefix_caching=ns.enable_prefix_caching,
            gpu_memory_utilization=ns.gpu_memory_utilization,
            tensor_parallel_size=ns.tensor_parallel_size,
            dtype=ns.dtype,
            quantization=ns.quantization,
            hf_overrides=hf_overrides,
            api_key=ns.api_key or None,
            scheduling_policy=ns.scheduling_policy,
            otlp_traces_endpoint=ns.otlp_traces_endpoint,
            host=ns.host,
            port=ns.port,
            profile=PROFILES[ns.sim_profile],
            time_scale=ns.sim_time_scale,
            cache_blocks=cache_blocks,
            replica_name=ns.sim_replica_name or _default_replica_name(),
            natural_output_tokens=ns.sim_output_len,
            access_log=ns.sim_access_log,
        )
    except ValueError as exc:
        build_parser().error(str(exc))
    return ParsedArgs(config=config, ignored=tuple(ignored), port_file=ns.sim_port_file)
