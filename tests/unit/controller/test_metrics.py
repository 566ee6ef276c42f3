"""The operator's metrics: what each report adds, and the endpoint on a real socket."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from llmservice.controller.metrics import OperatorMetrics, serve_metrics


def llmservice(name: str, conditions: list[tuple[str, str, str]], desired: int, ready: int) -> Any:
    return {
        "metadata": {"namespace": "team-a", "name": name},
        "status": {
            "replicas": desired,
            "readyReplicas": ready,
            "conditions": [{"type": t, "status": s, "reason": r} for t, s, r in conditions],
        },
    }


STORE = [
    llmservice("chat", [("Ready", "True", "Available"), ("Stalled", "False", "Reconciled")], 2, 2),
    llmservice(
        "code", [("Ready", "False", "Unschedulable"), ("Stalled", "True", "Unschedulable")], 1, 0
    ),
    {"metadata": {"namespace": "team-a", "name": "new"}},  # no status yet
]


def samples(registry: CollectorRegistry) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    found = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(
    found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float | None:
    return found.get((name, frozenset(labels.items())))


def test_reports_become_series() -> None:
    metrics = OperatorMetrics(CollectorRegistry(), lambda: STORE)
    metrics.reconciled(0.2, ok=True)
    metrics.reconciled(0.3, ok=True)
    metrics.reconciled(4.0, ok=False)
    metrics.api_error("patch", 409)
    metrics.api_error("patch", 409)
    metrics.api_error("get", 404)  # an answer, not an error
    metrics.api_error("list", 0)
    metrics.scraped("team-a", "chat", 2, 1)
    metrics.scraped("team-a", "chat", 2, 0)
    found = samples(metrics.registry)
    prefix = "llmservice_operator"
    assert value(found, f"{prefix}_reconciles_total", result="success") == 2
    assert value(found, f"{prefix}_reconciles_total", result="error") == 1
    assert value(found, f"{prefix}_reconcile_duration_seconds_count") == 3
    assert value(found, f"{prefix}_reconcile_duration_seconds_bucket", le="0.25") == 1
    assert value(found, f"{prefix}_api_errors_total", verb="patch", code="409") == 2
    assert value(found, f"{prefix}_api_errors_total", verb="list", code="0") == 1
    assert value(found, f"{prefix}_api_errors_total", verb="get", code="404") is None
    assert value(found, f"{prefix}_scrapes_total", namespace="team-a", llmservice="chat") == 4
    assert (
        value(found, f"{prefix}_scrape_failures_total", namespace="team-a", llmservice="chat") == 1
    )
    assert value(found, f"{prefix}_llmservices", type="Ready", status="True") == 1
    assert value(found, f"{prefix}_llmservices", type="Ready", status="False") == 1
    assert value(found, f"{prefix}_llmservices", type="Stalled", status="True") == 1
    stalled = {"namespace": "team-a", "llmservice": "code", "type": "Stalled", "status": "True"}
    assert value(found, f"{prefix}_llmservice_condition", **stalled, reason="Unschedulable") == 1
    # Only the current status of each condition has a series.
    other = {**stalled, "status": "False", "reason": "Reconciled"}
    assert value(found, f"{prefix}_llmservice_condition", **other) is None
    replicas = f"{prefix}_engine_replicas"
    assert value(found, replicas, namespace="team-a", llmservice="code", state="desired") == 1
    assert value(found, replicas, namespace="team-a", llmservice="code", state="ready") == 0
    assert not [key for key in found if dict(key[1]).get("llmservice") == "new"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_endpoint_serves_the_registry() -> None:
    async def scrape() -> httpx.Response:
        metrics = OperatorMetrics(CollectorRegistry(), lambda: STORE)
        metrics.reconciled(0.1, ok=True)
        port = free_port()
        runner = await serve_metrics(metrics.registry, "127.0.0.1", port)
        try:
            async with httpx.AsyncClient() as http:
                return await http.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        finally:
            await runner.cleanup()

    response = asyncio.run(scrape())
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert 'llmservice_operator_reconciles_total{result="success"} 1.0' in response.text
