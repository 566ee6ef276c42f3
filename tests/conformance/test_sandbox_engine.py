"""The sandbox with real engine Pods: `examples/minimal.yaml` becomes Ready on the real vLLM,
and its TOKENS/S column comes from the real engine's counters.

This is `llmservice sandbox up --engine vllm` step by step, with the same functions.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from llmservice.sandbox import stack
from llmservice.sandbox.cluster import Sandbox
from llmservice.sandbox.errors import SandboxError
from llmservice.sandbox.layout import Settings
from llmservice.sandbox.product import Product, ensure_product
from llmservice.sandbox.progress import Progress
from llmservice.sandbox.runtime.records import load_all
from llmservice.sandbox.versions import VllmLayout, default_layout
from llmservice.vllm_release import VLLM_VERSION
from tests.e2e.addresses import fresh_pod_cidr

pytestmark = pytest.mark.timeout(1500)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory, vllm: VllmLayout) -> Iterator[Sandbox]:
    binaries = default_layout()
    if binaries.missing():
        pytest.fail(f"sandbox binaries missing ({binaries.missing()[0]}): run `make conformance`")
    progress = Progress()
    try:
        product: Product = ensure_product(progress)
        settings = Settings(pod_cidr=fresh_pod_cidr(), engine="vllm")
        directory = tmp_path_factory.mktemp("sandbox")
        instance = Sandbox(directory, settings, binaries, progress, product)
        instance.up()
    except SandboxError as exc:
        pytest.fail(f"sandbox did not start: {exc}")
    yield instance
    instance.down()


def engine_processes(sandbox: Sandbox) -> list[tuple[str, str, Path]]:
    """(pod, url, log) of every engine process the runtime started."""
    return [
        (p.name, f"http://{p.ip}:{p.port}", Path(p.process.log))
        for p in load_all(sandbox.dir.runtime).values()
        if p.component == "engine"
    ]


def test_minimal_example_is_ready_with_tokens_per_second_from_vllm(sandbox: Sandbox) -> None:
    progress = Progress()
    stack.install_operator(sandbox, progress)
    stack.apply_example(sandbox, progress)
    started = time.monotonic()
    table = stack.send_traffic_and_show_throughput(
        sandbox, progress, ready_timeout=stack.REAL_ENGINE_READY_TIMEOUT
    )
    progress.say(f"Ready with tokens per second {time.monotonic() - started:.0f}s after apply")

    header, row = table.strip().splitlines()[:2]
    columns = dict(zip(header.split(), row.split(), strict=False))
    assert columns["READY"] == "True", table
    assert float(columns["TOKENS/S"]) > 0, table

    # The engine that served is vLLM itself, started with the logged flag changes.
    (pod, url, _log), *others = engine_processes(sandbox)
    assert not others
    version = httpx.get(f"{url}/version", timeout=10).json()["version"]
    assert version == VLLM_VERSION
    runtime_log = sandbox.dir.log("local-runtime").read_text(encoding="utf-8")
    line = rf"Engine Pod \S+/{re.escape(pod)} runs vLLM \S+; flags changed: (.*)"
    changed = re.search(line, runtime_log)
    assert changed is not None, runtime_log[-2000:]
    assert "added --load-format dummy" in changed[1]
    progress.say(changed[0])
    metrics = httpx.get(f"{url}/metrics", timeout=10).text
    generated = re.search(r"^vllm:generation_tokens_total\{[^}]*\} (\S+)$", metrics, re.MULTILINE)
    assert generated is not None
    assert float(generated[1]) > 0
