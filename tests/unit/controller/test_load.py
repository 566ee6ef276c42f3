"""Load signals parsed from real router and engine /metrics text."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge, generate_latest

from llmservice.controller.load import RouterLoad, kv_cache_usage, new_requests, router_load
from llmservice.router.metrics import RouterMetrics


def test_router_load_from_the_routers_own_exposition() -> None:
    in_flight = {"10.0.0.1:8000": 2, "10.0.0.2:8000": 3}
    metrics = RouterMetrics(CollectorRegistry(), in_flight=lambda: in_flight)
    metrics.observe_request("/v1/chat/completions", 200, "m", 0.1, 0.05)
    metrics.observe_request("/v1/chat/completions", 503, "m", 0.1, None)
    load = router_load(metrics.render().decode())
    assert load == RouterLoad(in_flight=5.0, queued=0.0, requests=2.0)


def test_queued_requests_are_summed_over_keys() -> None:
    text = (
        "# TYPE llmservice_router_queued gauge\n"
        'llmservice_router_queued{key="a"} 2\n'
        'llmservice_router_queued{key="b"} 1\n'
    )
    assert router_load(text).queued == 3.0


def test_new_requests_between_scrapes_count_resets_and_skip_new_routers() -> None:
    before = {"r1": RouterLoad(requests=10), "r2": RouterLoad(requests=50)}
    after = {
        "r1": RouterLoad(requests=13),
        "r2": RouterLoad(requests=4),
        "r3": RouterLoad(requests=9),
    }
    assert new_requests(before, after) == 3 + 4


def test_kv_cache_usage_current_and_older_names() -> None:
    registry = CollectorRegistry()
    Gauge("vllm:kv_cache_usage_perc", "KV-cache usage.", registry=registry).set(0.25)
    assert kv_cache_usage(generate_latest(registry).decode()) == 0.25
    assert kv_cache_usage("vllm:gpu_cache_usage_perc 0.5\n") == 0.5
    assert kv_cache_usage("vllm:num_requests_running 1\n") is None
