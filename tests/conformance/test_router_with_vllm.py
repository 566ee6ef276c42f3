"""The router in front of two real vLLM replicas: streaming, session affinity, aborts on
disconnect, and an API key's priority reaching vLLM's priority scheduler.

Which replica served a request is read from the replicas' own counters
(`vllm:request_success_total`), not from anything the router says about itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conformance.servers import (
    CONTEXT_TOKENS,
    METRICS_POLL_SECONDS,
    MODEL,
    Server,
    start_router,
    wait_for,
)

pytestmark = pytest.mark.timeout(1200)
SESSION_HEADER = "X-Session-ID"
DONE = "vllm:request_success_total"
RUNNING = "vllm:num_requests_running"
WAITING = "vllm:num_requests_waiting"
# As many tokens as the engines' long context leaves after a short prompt: many minutes of
# decoding here (see SPEC_FIELDS).
ENDLESS = {"max_tokens": CONTEXT_TOKENS - 256, "ignore_eos": True}
# How soon after the client hangs up its request must stop in vLLM. Generous, because the
# test can run late on a busy machine; the request would otherwise run for many minutes.
ABORT_SECONDS = 120.0
REPOSITORY = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def router(
    engines: list[Server], addresses: Iterator[str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    server = start_router(next(addresses), engines, tmp_path_factory.mktemp("router"))
    try:
        server.wait_healthy(60.0, "/readyz")
        yield server
    finally:
        server.stop()


# Keys as the operator mounts them; the router sets vLLM's `priority` from theirs.
KEYS = {
    "keys": [
        {"name": "batch", "key": "sk-conformance-batch-0001", "priority": 1},
        {"name": "interactive", "key": "sk-conformance-interactive-0001", "priority": 10},
    ]
}


def bearer(name: str) -> dict[str, str]:
    key = next(entry["key"] for entry in KEYS["keys"] if entry["name"] == name)
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def keyed_router(
    engines: list[Server], addresses: Iterator[str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A router with API keys and --engine-priority, as the operator runs it with keys."""
    logs = tmp_path_factory.mktemp("keyed-router")
    keys = logs / "keys.yaml"
    keys.write_text(yaml.safe_dump(KEYS))
    # The test's clients stop reading after their first chunk; the router's idle timer also
    # runs while a client does not read, and must not end the request holding the slot.
    extra = ["--api-keys-file", str(keys), "--engine-priority", "--idle-timeout", "3600"]
    server = start_router(next(addresses), engines, logs, extra)
    try:
        server.wait_healthy(60.0, "/readyz")
        yield server
    finally:
        server.stop()


def chat(content: str, **fields: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": content}], **fields}


def gauge_becomes(engine: Server, gauge: str, value: int, timeout: float, what: str) -> None:
    """Wait for one of vLLM's gauges, scraping at a pace its API server can take."""
    wait_for(lambda: engine.metrics().get(gauge) == value, timeout, what, METRICS_POLL_SECONDS)


def served_by(engines: list[Server], send: Any) -> int:
    """Which replica's success counter `send()` moved."""
    before = [e.metrics().get(DONE, 0.0) for e in engines]
    send()
    after = [e.metrics().get(DONE, 0.0) for e in engines]
    moved = [i for i, (b, a) in enumerate(zip(before, after, strict=True)) if a > b]
    assert len(moved) == 1, (before, after)
    return moved[0]


def test_streaming_through_the_router(router: Server) -> None:
    body = chat("Count to three.", max_tokens=12, ignore_eos=True, stream=True)
    body["stream_options"] = {"include_usage": True}
    response = httpx.post(router.url + "/v1/chat/completions", json=body, timeout=60.0)
    assert response.status_code == 200
    lines = [ln.removeprefix("data: ") for ln in response.text.splitlines() if ln]
    assert lines[-1] == "[DONE]"
    chunks = [json.loads(line) for line in lines[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["usage"]["completion_tokens"] == 12


def test_a_session_stays_on_one_replica(router: Server, engines: list[Server]) -> None:
    # The router places new sessions so that session counts stay even (earlier tests'
    # conversations count too), so eight fresh ones reach both replicas; each stays.
    sessions = [f"session-{n}" for n in range(8)]
    served: dict[str, list[int]] = {}
    with httpx.Client(base_url=router.url, timeout=60.0) as http:
        for session in sessions:
            for turn in range(2):

                def send(session: str = session, turn: int = turn) -> None:
                    response = http.post(
                        "/v1/chat/completions",
                        json=chat(f"Turn {turn}.", max_tokens=4),
                        headers={SESSION_HEADER: session},
                    )
                    assert response.status_code == 200

                served.setdefault(session, []).append(served_by(engines, send))
    assert all(first == second for first, second in served.values()), served
    placed = [turns[0] for turns in served.values()]
    assert set(placed) == set(range(len(engines))), served


class Streamer:
    """A streamed request from a client process of its own (`stream_client`), which reads up
    to the first event and then holds the connection open until `close()`.

    ``status``, ``first_chunk`` (whether the first event came) and ``error`` are what the
    process has reported so far."""

    def __init__(
        self, url: str, body: dict[str, Any], session: str, headers: dict[str, str] | None = None
    ) -> None:
        self.status: int | None = None
        self.first_chunk = False
        self.error: str | None = None
        request = {
            "body": {**body, "stream": True},
            "headers": {SESSION_HEADER: session, **(headers or {})},
        }
        argv = [sys.executable, "-m", "tests.conformance.stream_client", url, json.dumps(request)]
        self._process = subprocess.Popen(
            argv, cwd=REPOSITORY, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        self._stdin, self._stdout = self._process.stdin, self._process.stdout
        os.set_blocking(self._stdout.fileno(), False)
        self._pending = b""

    def poll(self) -> Streamer:
        """Take in what the process has reported since the last call."""
        if self._stdout.closed:
            return self
        with contextlib.suppress(BlockingIOError):
            while chunk := os.read(self._stdout.fileno(), 4096):
                self._pending += chunk
        *lines, self._pending = self._pending.split(b"\n")
        for line in lines:
            kind, _, value = line.decode().partition(" ")
            if kind == "status":
                self.status = int(value)
            elif kind == "first":
                self.first_chunk = True
            elif kind == "error":
                self.error = value
        return self

    def runs(self) -> bool:
        """Whether the request got its first event; fails at once with the cause if it was
        refused or failed, rather than letting a wait for it run out."""
        self.poll()
        assert self.error is None, self.error
        assert self.status in (None, 200), f"status {self.status}"
        return self.first_chunk

    def close(self) -> None:
        """Hang up, also while still waiting for the first event."""
        if self._stdout.closed:
            return
        self._process.kill()
        self._process.wait(timeout=30.0)
        self.poll()
        self._stdin.close()
        self._stdout.close()


def replica_of(
    session: str, router: Server, engines: list[Server], headers: dict[str, str] | None = None
) -> Server:
    """The replica `router` keeps `session` on (routers place sessions each by what it has
    seen, so another router may place the same session elsewhere)."""

    def send() -> None:
        response = httpx.post(
            router.url + "/v1/chat/completions",
            json=chat("Which replica?", max_tokens=2),
            headers={SESSION_HEADER: session, **(headers or {})},
            timeout=60.0,
        )
        assert response.status_code == 200

    return engines[served_by(engines, send)]


def test_a_client_that_disconnects_aborts_its_request_in_vllm(
    router: Server, engines: list[Server]
) -> None:
    engine = replica_of("leaving", router, engines)
    url = router.url + "/v1/chat/completions"
    done = engine.metrics().get(DONE, 0.0)
    streamer = Streamer(url, chat("Go on forever.", **ENDLESS), "leaving")
    wait_for(streamer.runs, 300.0, "the first chunk")
    streamer.close()
    gauge_becomes(engine, RUNNING, 0, ABORT_SECONDS, "the request to stop")
    # Aborted: vLLM counts no request as ended by its length or a stop.
    assert engine.metrics().get(DONE, 0.0) == done


def held(engine: Server) -> int:
    """How many requests vLLM holds: running or waiting."""
    sample = engine.metrics()
    return round(sample.get(RUNNING, 0.0) + sample.get(WAITING, 0.0))


def runs_after_hanging_up(high: Streamer, others: list[Streamer]) -> bool:
    """Whether `high` runs; hangs up first on each of `others` that does."""
    for streamer in others:
        if streamer.runs():
            streamer.close()
    return high.runs()


def test_a_keys_priority_reaches_the_vllm_scheduler(
    keyed_router: Server, engines: list[Server]
) -> None:
    """One sequence at a time: while a request of the low-priority key runs, another of
    that key waits, then one of the high-priority key arrives. Hanging up on whichever
    request runs, until the high one does: vLLM's priority scheduler runs the high one
    next, with the low one still waiting behind it; first come, first served would run the
    low one first, and nothing would wait behind the high one.

    Each step is read from vLLM's own gauges, and none has to happen within a time: the
    requests run for many minutes, so a test that runs late on a busy machine sees the
    same order."""
    engine = replica_of("ordered", keyed_router, engines, bearer("interactive"))
    url = keyed_router.url + "/v1/chat/completions"
    # The clients' own `priority` is replaced by their key's.
    low = partial(Streamer, url, session="ordered", headers=bearer("batch"))
    streamers: list[Streamer] = []
    try:
        streamers.append(low(chat("Hold the slot.", **ENDLESS, priority=-1000)))
        wait_for(streamers[0].runs, 300.0, "the first request to run")
        streamers.append(low(chat("Low.", **ENDLESS, priority=-1000)))
        wait_for(lambda: held(engine) == 2, 300.0, "vLLM to take in the low one")
        high = Streamer(url, chat("High.", **ENDLESS), "ordered", bearer("interactive"))
        streamers.append(high)
        wait_for(lambda: held(engine) == 3, 300.0, "vLLM to take in the high one")
        wait_for(partial(runs_after_hanging_up, high, streamers[:2]), 300.0, "the high one to run")
        assert engine.metrics()[WAITING] == 1, "the high one ran after the low one"
    finally:
        for streamer in streamers:
            streamer.close()
        gauge_becomes(engine, RUNNING, 0, ABORT_SECONDS, "every request to stop")
