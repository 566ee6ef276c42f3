"""`llmservice sim` as a subprocess, and `SimServer` inside an event loop."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from llmservice.sim import SimServer, create_app

from .conftest import fast_config


def test_cli_starts_from_operator_args_and_stops_on_sigterm(tmp_path: Path) -> None:
    port_file = tmp_path / "port"
    args = [
        sys.executable, "-m", "llmservice.cli", "sim",
        "--model", "meta-llama/Llama-3.1-8B-Instruct",
        "--served-model-name", "chat", "gpt-4",
        "--max-model-len", "8192",
        "--gpu-memory-utilization", "0.9",
        "--max-num-seqs", "8",
        "--tensor-parallel-size", "2",
        "--dtype", "auto",
        "--quantization", "awq",
        "--hf-overrides", '{"rope_scaling": {"rope_type": "yarn", "factor": 2.0}}',
        "--kv-cache-dtype", "fp8", "--enforce-eager",
        "--host", "127.0.0.1", "--port", "0",
        "--sim-time-scale", "0.01", "--sim-port-file", str(port_file),
        "--sim-replica-name", "chat-engine-0",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(args, stderr=subprocess.PIPE, text=True, env=env) as proc:
        try:
            deadline = time.monotonic() + 30
            while not port_file.exists():
                assert proc.poll() is None, "the simulator exited early"
                assert time.monotonic() < deadline, "the simulator did not start"
                time.sleep(0.05)
            url = f"http://127.0.0.1:{int(port_file.read_text())}"
            with httpx.Client(base_url=url, timeout=30) as client:
                deadline = time.monotonic() + 30
                while True:
                    try:
                        if client.get("/health").status_code == 200:
                            break
                    except httpx.TransportError:
                        assert time.monotonic() < deadline
                        time.sleep(0.05)
                r = client.post(
                    "/v1/chat/completions",
                    json={"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]},
                )
                assert r.status_code == 200
                assert r.headers["x-inference-pod"] == "chat-engine-0"
                assert r.json()["model"] == "chat"
        finally:
            proc.send_signal(signal.SIGTERM)
            _, stderr = proc.communicate(timeout=30)
    # uvicorn shuts down gracefully, then re-raises the signal it caught.
    assert proc.returncode in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in stderr
    ignored = [line for line in stderr.splitlines() if "Ignoring vLLM flags" in line]
    assert len(ignored) == 1
    assert "--kv-cache-dtype fp8 --enforce-eager" in ignored[0]


def test_sim_server_in_the_callers_event_loop() -> None:
    async def main() -> None:
        async with (
            SimServer(fast_config()) as sim,
            httpx.AsyncClient(base_url=sim.url, timeout=30) as client,
        ):
            replies = await asyncio.gather(
                *(
                    client.post("/v1/completions", json={"prompt": f"p{i}", "max_tokens": 3})
                    for i in range(10)
                )
            )
            assert [r.status_code for r in replies] == [200] * 10
            assert sim.app.metrics.success["length"] == 10

    asyncio.run(main())


def test_create_app_without_a_server() -> None:
    async def main() -> None:
        app = create_app(fast_config())
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sim") as client:
            r = await client.post("/v1/completions", json={"prompt": "x", "max_tokens": 2})
            assert r.json()["usage"]["completion_tokens"] == 2
        await app.engine.stop()

    asyncio.run(main())
