"""The conformance suite: what the project assumes about vLLM, checked against vLLM itself.

It needs the real engine installed (`llmservice sandbox build --engine vllm`, which
`make conformance` runs first); without it every test fails, never skips.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from llmservice.sandbox.progress import Progress
from llmservice.sandbox.versions import VllmLayout, default_vllm_layout
from tests.conformance.servers import (
    CONTEXT_TOKENS,
    ENGINE_START_SECONDS,
    MODEL,
    Server,
    minimal_args,
    start_engine,
)
from tests.e2e.addresses import fresh_pod_cidr

# One sequence at a time and vLLM's priority scheduler (which the operator turns on with API
# keys): queueing is then easy to create and to observe, and the order of waiting requests
# shows whether a key's priority reached vLLM. A context 8 times the model's own, as a spec
# stretches it with RoPE scaling: a request told to fill it decodes for many minutes here
# (64,000 tokens in the first minute, then slower as it grows), so it is still running
# whenever a test looks, however late the test looks.
SPEC_FIELDS = {
    "model": {
        "name": MODEL,
        "maxModelLen": CONTEXT_TOKENS,
        "ropeScaling": {"type": "linear", "factor": 8, "originalMaxPositionEmbeddings": 32768},
    },
    "engine": {"maxNumSeqs": 1},
    "router": {"apiKeysSecretRef": {"name": "api-keys", "key": "keys.yaml"}},
}


@pytest.fixture(scope="session")
def vllm() -> VllmLayout:
    layout = default_vllm_layout()
    if not layout.installed():
        pytest.fail(
            f"vLLM {layout.version} is not installed in {layout.directory}:"
            " run `llmservice sandbox build --engine vllm` (or `make conformance`)"
        )
    return layout


@pytest.fixture(scope="session")
def addresses() -> Iterator[str]:
    """Loopback addresses of a /16 no other test run uses: 127.N.0.1, 127.N.0.2, ..."""
    prefix = fresh_pod_cidr().removesuffix(".0.0/16")
    return iter([f"{prefix}.0.{host}" for host in range(1, 255)])


@pytest.fixture(scope="session")
def engines(
    vllm: VllmLayout, addresses: Iterator[str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[Server]]:
    """Two real vLLM replicas, started together once for the whole suite."""
    logs = tmp_path_factory.mktemp("engines")
    rendered = minimal_args(**SPEC_FIELDS)
    assert "--scheduling-policy" in rendered
    started = time.monotonic()
    replicas = [start_engine(vllm, next(addresses), rendered, logs) for _ in range(2)]
    try:
        for replica in replicas:
            replica.wait_healthy(ENGINE_START_SECONDS)
        Progress().say(f"two vLLM engines healthy {time.monotonic() - started:.0f}s after start")
        yield replicas
    finally:
        for replica in replicas:
            replica.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests on the two shared engines last, together: they stop only at the session's end,
    and each engine holds a few GB that the sandbox's own engine Pod needs meanwhile."""
    items.sort(key=lambda item: "engines" in getattr(item, "fixturenames", ()))
