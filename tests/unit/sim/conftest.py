"""Simulators on real loopback sockets, with model time scaled down so tests run fast."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from llmservice.sim import SimConfig, SimServer, TimingProfile

# Fast but not instant: a decode step takes 1 ms, a prompt token 20 us.
FAST = TimingProfile("test-fast", 0.001, 0.0, 0.0005, 0.00002)


def fast_config(**changes: object) -> SimConfig:
    base = SimConfig(
        model="meta-llama/Llama-3.1-8B-Instruct",
        served_model_names=("llama", "gpt-3.5-turbo"),
        max_model_len=4096,
        profile=FAST,
        replica_name="sim-0",
    )
    return base.with_overrides(**changes)


@pytest.fixture(scope="module")
def sim() -> Iterator[SimServer]:
    with SimServer(fast_config()) as server:
        yield server


@pytest.fixture
def client(sim: SimServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.url, timeout=30) as c:
        yield c


def scrape(client: httpx.Client) -> dict[str, float]:
    """Samples of /metrics keyed by `name{labels}` as exposed (labels sorted by the exporter)."""
    out = {}
    for line in client.get("/metrics").text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def sample(samples: dict[str, float], name: str, **labels: str) -> float:
    """The value of one sample, matching `name` and a subset of labels."""
    for key, value in samples.items():
        metric, _, rest = key.partition("{")
        if metric == name and all(f'{k}="{v}"' in rest for k, v in labels.items()):
            return value
    raise KeyError(name)
