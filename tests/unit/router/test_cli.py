"""`llmservice router`: argument mapping, and drain on SIGTERM in a real process."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from pathlib import Path

import aiohttp
import pytest

from llmservice.router import Strategy
from llmservice.router.cli import build_config, main, parser
from llmservice.router.config import ClientLimits

from .backends import FakeBackend, Mode
from .conftest import run, until


def test_arguments_map_to_the_config() -> None:
    args = parser().parse_args(
        [
            "--served-model-name", "llama",
            "--alias", "gpt-3.5-turbo", "--alias", "gpt-4o",
            "--namespace", "team-a",
            "--selector", "app.kubernetes.io/instance=chat,app.kubernetes.io/component=engine",
            "--engine-port", "8001",
            "--strategy", "LeastLoad",
            "--session-header", "X-Conversation",
            "--load-bound", "1.5",
            "--first-byte-timeout", "60",
            "--retries", "1",
            "--api-keys-file", "/etc/llmservice/api-keys/keys.yaml",
        ]
    )  # fmt: skip
    cfg = build_config(args)
    assert cfg.model_names == ("llama", "gpt-3.5-turbo", "gpt-4o")
    assert cfg.discovery.namespace == "team-a"
    assert cfg.discovery.selector.endswith("component=engine")
    assert cfg.discovery.engine_port == 8001
    assert cfg.discovery.static_backends == ()
    assert cfg.balancer.strategy is Strategy.LEAST_LOAD
    assert cfg.balancer.load_bound == 1.5
    assert cfg.session_header == "X-Conversation"
    assert cfg.timeouts.first_byte == 60
    assert cfg.retry.attempts_max == 1
    assert cfg.api_keys_file == "/etc/llmservice/api-keys/keys.yaml"
    assert not cfg.forward_authorization


@pytest.mark.parametrize(
    "argv",
    [
        ["--served-model-name", "m"],  # neither a selector nor static backends
        ["--served-model-name", "m", "--static-backends", "x", "--load-bound", "0.5"],
        ["--served-model-name", "m", "--static-backends", "x", "--idle-timeout", "0"],
    ],
)
def test_inconsistent_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert "llmservice router:" in capsys.readouterr().err


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_sigterm_fails_readiness_then_finishes_streams_and_exits_0() -> None:
    async def scenario() -> None:
        async with FakeBackend(Mode.STREAM, chunks=50, delay=0.1) as backend:
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "llmservice.cli", "router",
                "--served-model-name", "llama", "--host", "127.0.0.1", "--port", str(port),
                "--static-backends", backend.url, "--drain-delay", "3", "--grace-period", "20",
                "--no-access-log",
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            try:
                async with aiohttp.ClientSession() as client:

                    async def ready() -> bool:
                        try:
                            async with client.get(url + "/readyz") as response:
                                return response.status == 200
                        except aiohttp.ClientConnectionError:
                            return False

                    await until(ready, within=30, step=0.1)
                    body = {"model": "llama", "stream": True, "messages": [{"role": "user"}]}
                    async with client.post(url + "/v1/chat/completions", json=body) as stream:
                        await backend.stream_started.wait()
                        process.send_signal(signal.SIGTERM)

                        async def unready() -> bool:
                            async with client.get(url + "/readyz") as response:
                                return response.status == 503

                        await until(unready, within=2.5, step=0.05)
                        events = [
                            line async for line in stream.content if line.startswith(b"data:")
                        ]
                    assert events[-1].strip() == b"data: [DONE]"
                    assert len(events) == 52
                assert await asyncio.wait_for(process.wait(), 30) == 0
            finally:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
                assert process.stderr is not None
                await process.stderr.read()

    run(scenario())


def test_discovery_without_a_cluster_config_exits_2(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path) + "/missing-kubeconfig")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    argv = ["--served-model-name", "m", "--selector", "app=engine"]
    assert main(argv) == 2
    assert "discovery" in capsys.readouterr().err


def test_bad_static_backend_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--served-model-name", "m", "--static-backends", "https://x:1"]) == 2
    assert "http://host:port" in capsys.readouterr().err


def test_an_invalid_keys_file_stops_the_router_at_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = tmp_path / "keys.yaml"
    keys.write_text("keys:\n  - {name: a, key: sk-a-0123456789abcdef, priority: 0}\n")
    argv = ["--served-model-name", "m", "--static-backends", "http://127.0.0.1:9"]
    assert main([*argv, "--api-keys-file", str(keys)]) == 2
    err = capsys.readouterr().err
    assert "keys[0] (a).priority" in err
    assert "sk-a-0123456789abcdef" not in err


def test_admission_arguments_map_to_the_config() -> None:
    base = ["--served-model-name", "m", "--static-backends", "http://127.0.0.1:9"]
    cfg = build_config(parser().parse_args(base))
    assert cfg.admission.max_in_flight_per_replica is None  # no cap unless asked
    assert cfg.admission.requests_per_minute is None
    assert cfg.admission.min_tokens_per_second_per_request is None
    assert not cfg.admission.engine_priority
    cfg = build_config(
        parser().parse_args(
            [
                *base,
                "--max-in-flight-per-replica", "4",
                "--max-queued", "9",
                "--queue-timeout", "2.5",
                "--requests-per-minute", "120",
                "--min-tokens-per-second-per-request", "12.5",
                "--gate-interval", "0.5",
                "--engine-priority",
            ]
        )
    )  # fmt: skip
    admission = cfg.admission
    assert admission.max_in_flight_per_replica == 4
    assert admission.max_queued == 9
    assert admission.queue_timeout == 2.5
    assert admission.requests_per_minute == 120
    assert admission.min_tokens_per_second_per_request == 12.5
    assert admission.gate_interval == 0.5
    assert admission.engine_priority


@pytest.mark.parametrize(
    "flags",
    [
        ["--max-in-flight-per-replica", "0"],
        ["--max-queued", "-1"],
        ["--queue-timeout", "0"],
        ["--requests-per-minute", "0"],
        ["--min-tokens-per-second-per-request", "0"],
    ],
)
def test_bad_admission_arguments_exit_2(
    flags: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--served-model-name", "m", "--static-backends", "http://127.0.0.1:9", *flags]
    assert main(argv) == 2
    assert "llmservice router:" in capsys.readouterr().err


def test_tracing_arguments_map_to_the_config() -> None:
    base = ["--served-model-name", "m", "--static-backends", "http://127.0.0.1:9"]
    assert build_config(parser().parse_args(base)).tracing.otlp_endpoint is None
    url = "http://127.0.0.1:4318/v1/traces"
    args = [*base, "--otlp-traces-endpoint", url, "--trace-sampling-ratio", "0.1"]
    tracing = build_config(parser().parse_args(args)).tracing
    assert (tracing.otlp_endpoint, tracing.sampling_ratio) == (url, 0.1)


@pytest.mark.parametrize(
    "flags",
    [
        ["--otlp-traces-endpoint", "127.0.0.1:4318"],
        [
            "--otlp-traces-endpoint",
            "http://127.0.0.1:4318/v1/traces",
            "--trace-sampling-ratio",
            "2",
        ],
    ],
)
def test_bad_tracing_arguments_exit_2(flags: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--served-model-name", "m", "--static-backends", "http://127.0.0.1:9", *flags]
    assert main(argv) == 2
    assert "llmservice router:" in capsys.readouterr().err


def test_client_limit_arguments_map_to_the_config() -> None:
    base = ["--served-model-name", "m", "--static-backends", "http://127.0.0.1:9"]
    assert build_config(parser().parse_args(base)).client_limits == ClientLimits()
    args = [
        *base,
        "--max-header-count", "50",
        "--max-header-bytes", "8192",
        "--header-timeout", "2.5",
        "--keep-alive-timeout", "620",
        "--max-client-connections", "100",
    ]  # fmt: skip
    limits = build_config(parser().parse_args(args)).client_limits
    assert limits == ClientLimits(
        max_header_count=50,
        max_header_bytes=8192,
        header_timeout=2.5,
        keep_alive_timeout=620,
        max_connections=100,
    )


@pytest.mark.parametrize(
    "flags",
    [["--max-header-bytes", "10"], ["--header-timeout", "0"], ["--max-client-connections", "0"]],
)
def test_bad_client_limit_arguments_exit_2(
    flags: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--served-model-name", "m", "--static-backends", "http://127.0.0.1:9", *flags]
    assert main(argv) == 2
    assert "llmservice router:" in capsys.readouterr().err


def test_trusted_proxies_argument_maps_to_the_config() -> None:
    base = ["--served-model-name", "m", "--static-backends", "http://127.0.0.1:9"]
    assert build_config(parser().parse_args(base)).trusted_proxies == ()
    args = [*base, "--trusted-proxies", "10.0.0.0/8, fd00::/8"]
    assert build_config(parser().parse_args(args)).trusted_proxies == ("10.0.0.0/8", "fd00::/8")
    assert main([*base, "--trusted-proxies", "not-a-network"]) == 2
