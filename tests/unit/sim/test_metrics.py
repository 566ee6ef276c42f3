"""/metrics carries vLLM's current metric names, types and labels."""

from __future__ import annotations

import httpx

from .conftest import sample, scrape

# Current names and types, from vLLM's vllm/v1/metrics/loggers.py.
EXPECTED_TYPES = {
    "vllm:num_requests_running": "gauge",
    "vllm:num_requests_waiting": "gauge",
    "vllm:kv_cache_usage_perc": "gauge",
    "vllm:prefix_cache_queries": "counter",
    "vllm:prefix_cache_hits": "counter",
    "vllm:prompt_tokens": "counter",
    "vllm:generation_tokens": "counter",
    "vllm:request_success": "counter",
    "vllm:time_to_first_token_seconds": "histogram",
    "vllm:inter_token_latency_seconds": "histogram",
    "vllm:e2e_request_latency_seconds": "histogram",
    "vllm:cache_config_info": "gauge",
}
REMOVED_FROM_VLLM = ("vllm:gpu_cache_usage_perc", "vllm:time_per_output_token_seconds")


def _types(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, type_ = line.split(" ")
            out[name] = type_
    return out


def test_names_and_types(client: httpx.Client) -> None:
    text = client.get("/metrics").text
    types = _types(text)
    for name, type_ in EXPECTED_TYPES.items():
        # prometheus-client (and so vLLM) names a counter's family after its _total sample.
        exposed = f"{name}_total" if type_ == "counter" else name
        assert types.get(exposed) == type_, name
    for name in REMOVED_FROM_VLLM:
        assert name not in text
    # Counters are exposed with the _total suffix.
    for name, type_ in EXPECTED_TYPES.items():
        if type_ == "counter":
            assert f"\n{name}_total{{" in text, name


def test_labels_and_values_move(client: httpx.Client) -> None:
    before = scrape(client)
    r = client.post(
        "/v1/completions", json={"model": "llama", "prompt": "metrics", "max_tokens": 4}
    )
    usage = r.json()["usage"]
    after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        labels = {"model_name": "llama", "engine": "0", **labels}
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert delta("vllm:prompt_tokens_total") == usage["prompt_tokens"]
    assert delta("vllm:generation_tokens_total") == 4
    assert delta("vllm:prefix_cache_queries_total") == usage["prompt_tokens"]
    assert delta("vllm:request_success_total", finished_reason="length") == 1
    assert delta("vllm:time_to_first_token_seconds_count") == 1
    assert delta("vllm:inter_token_latency_seconds_count") == 3
    assert delta("vllm:e2e_request_latency_seconds_count") == 1
    info = sample(after, "vllm:cache_config_info", block_size="16", engine="0")
    assert info == 1.0
