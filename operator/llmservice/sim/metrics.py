"""vLLM's Prometheus metrics, with vLLM's names, types, labels and buckets.

Names, label sets (`model_name`, `engine`; `finished_reason` on `vllm:request_success`) and
bucket boundaries follow `PrometheusStatLogger` in vLLM's `vllm/v1/metrics/loggers.py`.
Counters are exposed with the `_total` suffix, as prometheus-client does for vLLM. The
deprecated `vllm:gpu_cache_usage_perc`, `vllm:gpu_prefix_cache_*` and
`vllm:time_per_output_token_seconds` are not exported: current vLLM dropped them.

The engine updates plain numbers on its hot path (one addition per step, not one locked
call per token); a custom collector turns them into metric families at scrape time. Each
app owns its `CollectorRegistry`, so any number of simulators share a process.

Two counters exist only in the simulator: `llmservice_sim_aborted_requests_total`
(requests whose client went away) and `llmservice_sim_engine_steps_total`.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString as _float_to_go_string

from llmservice.sim.config import SimConfig

__all__ = ["FINISH_REASONS", "EngineGauges", "Histogram", "SimMetrics", "render_metrics"]

# prometheus-client's own `le` formatting (untyped upstream).
_le: Callable[[float], str] = _float_to_go_string

FINISH_REASONS = ("stop", "length", "abort", "error", "repetition")

TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0,
    2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
ITL_BUCKETS = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0,
    2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
)  # fmt: skip
REQUEST_LATENCY_BUCKETS = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0,
    50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip
ITERATION_TOKEN_BUCKETS = (1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)


def build_1_2_5_buckets(max_value: int) -> tuple[int, ...]:
    """1, 2, 5, 10, 20, 50, ... up to `max_value`, as vLLM sizes its token histograms."""
    out: list[int] = []
    exponent = 0
    while True:
        for mantissa in (1, 2, 5):
            value = mantissa * 10**exponent
            if value > max_value:
                return tuple(out)
            out.append(value)
        exponent += 1


class Histogram:
    """A label-less histogram whose `observe` can record many equal values at once."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(float(b) for b in bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float, times: int = 1) -> None:
        self.counts[bisect_left(self.bounds, value)] += times
        self.sum += value * times
        self.count += times

    def cumulative(self) -> list[tuple[str, float]]:
        out, running = [], 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += n
            out.append((_le(bound), float(running)))
        return out


@dataclass
class EngineGauges:
    """What the engine reports at scrape time."""

    running: int = 0
    waiting: int = 0
    kv_cache_usage: float = 0.0


@dataclass
class SimMetrics:
    """Every number the engine counts, plus the registry that exposes them."""

    config: SimConfig
    gauges: Callable[[], EngineGauges] = EngineGauges
    prompt_tokens: int = 0
    generation_tokens: int = 0
    prefix_cache_queries: int = 0
    prefix_cache_hits: int = 0
    preemptions: int = 0
    aborted: int = 0
    steps: int = 0
    success: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FINISH_REASONS, 0))
    registry: CollectorRegistry = field(init=False)

    def __post_init__(self) -> None:
        max_len = self.config.max_model_len
        self.ttft = Histogram(TTFT_BUCKETS)
        self.itl = Histogram(ITL_BUCKETS)
        self.e2e = Histogram(REQUEST_LATENCY_BUCKETS)
        self.queue_time = Histogram(REQUEST_LATENCY_BUCKETS)
        self.prefill_time = Histogram(REQUEST_LATENCY_BUCKETS)
        self.decode_time = Histogram(REQUEST_LATENCY_BUCKETS)
        self.inference_time = Histogram(REQUEST_LATENCY_BUCKETS)
        self.request_prompt_tokens = Histogram(build_1_2_5_buckets(max_len))
        self.request_generation_tokens = Histogram(build_1_2_5_buckets(max_len))
        self.request_max_tokens = Histogram(build_1_2_5_buckets(max_len))
        self.iteration_tokens = Histogram(ITERATION_TOKEN_BUCKETS)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))


_RUNNING = "vllm:num_requests_running"
_WAITING = "vllm:num_requests_waiting"
_KV_USAGE = "vllm:kv_cache_usage_perc"
# (name, help, SimMetrics attribute); help texts are vLLM's.
_COUNTERS = (
    (
        "vllm:prefix_cache_queries",
        "Prefix cache queries, in terms of number of queried tokens.",
        "prefix_cache_queries",
    ),
    (
        "vllm:prefix_cache_hits",
        "Prefix cache hits, in terms of number of cached tokens.",
        "prefix_cache_hits",
    ),
    ("vllm:num_preemptions", "Cumulative number of preemption from the engine.", "preemptions"),
    ("vllm:prompt_tokens", "Number of prefill tokens processed.", "prompt_tokens"),
    ("vllm:generation_tokens", "Number of generation tokens processed.", "generation_tokens"),
)
_HISTOGRAMS = (
    ("vllm:request_prompt_tokens", "Number of prefill tokens processed.", "request_prompt_tokens"),
    (
        "vllm:request_generation_tokens",
        "Number of generation tokens processed.",
        "request_generation_tokens",
    ),
    (
        "vllm:iteration_tokens_total",
        "Histogram of number of tokens per engine_step.",
        "iteration_tokens",
    ),
    (
        "vllm:request_params_max_tokens",
        "Histogram of the max_tokens request parameter.",
        "request_max_tokens",
    ),
    ("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", "ttft"),
    ("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", "itl"),
    ("vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", "e2e"),
    (
        "vllm:request_queue_time_seconds",
        "Histogram of time spent in WAITING phase for request.",
        "queue_time",
    ),
    (
        "vllm:request_inference_time_seconds",
        "Histogram of time spent in RUNNING phase for request.",
        "inference_time",
    ),
    (
        "vllm:request_prefill_time_seconds",
        "Histogram of time spent in PREFILL phase for request.",
        "prefill_time",
    ),
    (
        "vllm:request_decode_time_seconds",
        "Histogram of time spent in DECODE phase for request.",
        "decode_time",
    ),
)


def cache_config_labels(config: SimConfig) -> dict[str, str]:
    """`vllm:cache_config_info`'s labels: every field of vLLM's CacheConfig, as vLLM exports
    them; the simulator's own settings where it has them, vLLM's defaults elsewhere."""
    blocks = str(config.cache_blocks)
    tokens = config.cache_blocks * config.block_size
    return {
        "_block_size_resolved": "True",
        "block_size": str(config.block_size),
        "cache_dtype": "auto",
        "cache_hit_alignment_tokens": "None",
        "effective_attention_block_size": str(config.block_size),
        "enable_mamba_shared_prefix_checkpoint": "False",
        "enable_prefix_caching": str(config.enable_prefix_caching),
        "engine": "0",
        "gpu_memory_utilization": str(config.gpu_memory_utilization),
        "hash_block_size": "None",
        "is_attention_free": "False",
        "kv_cache_dtype_skip_layers": "[]",
        "kv_cache_layout": "None",
        "kv_cache_max_concurrency": str(tokens / config.max_model_len),
        "kv_cache_memory_bytes": "None",
        "kv_cache_size_tokens": str(tokens),
        "kv_offloading_backend": "native",
        "kv_offloading_size": "None",
        "kv_sharing_fast_prefill": "False",
        "mamba_block_size": "None",
        "mamba_cache_dtype": "auto",
        "mamba_cache_mode": "none",
        "mamba_page_size_padded": "None",
        "mamba_ssm_cache_dtype": "auto",
        "num_cpu_blocks": "None",
        "num_gpu_blocks": blocks,
        "num_gpu_blocks_override": "None",
        "prefix_cache_retention_interval": "0",
        "prefix_caching_hash_algo": "sha256",
        "prefix_match_unit": "None",
        "replayssm_buffer_len": "16",
        "skip_page_size_padded": "None",
        "sliding_window": "None",
        "swa_bounded_replay": "True",
        "use_kda_recoverssm": "False",
        "use_replayssm": "False",
        "user_specified_block_size": "False",
    }


class _Collector(Collector):
    def __init__(self, metrics: SimMetrics) -> None:
        self.m = metrics

    def collect(self) -> Iterator[Metric]:
        m, config = self.m, self.m.config
        names = ["model_name", "engine"]
        values = [config.served_name, "0"]
        g = m.gauges()

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            family = GaugeMetricFamily(name, doc, labels=names)
            family.add_metric(values, value)
            return family

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            family = CounterMetricFamily(name, doc, labels=names)
            family.add_metric(values, value)
            return family

        def histogram(name: str, doc: str, h: Histogram) -> HistogramMetricFamily:
            family = HistogramMetricFamily(name, doc, labels=names)
            family.add_metric(values, h.cumulative(), h.sum)
            return family

        for name, doc, value in (
            (_RUNNING, "Number of requests in model execution batches.", g.running),
            (_WAITING, "Number of requests waiting to be processed.", g.waiting),
            (_KV_USAGE, "KV-cache usage. 1 means 100 percent usage.", g.kv_cache_usage),
        ):
            yield gauge(name, doc, value)
        for name, doc, attr in _COUNTERS:
            yield counter(name, doc, getattr(m, attr))
        success = CounterMetricFamily(
            "vllm:request_success",
            "Count of successfully processed requests.",
            labels=[*names, "finished_reason"],
        )
        for reason, n in m.success.items():
            success.add_metric([*values, reason], n)
        yield success
        for name, doc, attr in _HISTOGRAMS:
            yield histogram(name, doc, getattr(m, attr))
        labels = cache_config_labels(config)
        info = GaugeMetricFamily(
            "vllm:cache_config_info",
            "Information of the LLMEngine CacheConfig",
            labels=list(labels),
        )
        info.add_metric(list(labels.values()), 1.0)
        yield info
        yield CounterMetricFamily(
            "llmservice_sim_aborted_requests",
            "Requests the simulator aborted because the client went away.",
            value=m.aborted,
        )
        yield CounterMetricFamily(
            "llmservice_sim_engine_steps", "Engine steps the simulator ran.", value=m.steps
        )


def render_metrics(metrics: SimMetrics) -> bytes:
    """The Prometheus text exposition of one simulator's registry."""
    return generate_latest(metrics.registry)
