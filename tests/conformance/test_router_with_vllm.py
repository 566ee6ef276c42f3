"""The router in front of two real vLLM replicas: streaming, session affinity, aborts on
disconnect, and an API key's priority reaching vLLM's priority scheduler.

Which replica served a request is read from the replicas' own counters
(`vllm:request_success_total`), not from anything the router says about itself.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from functools import partial
from typing import Any

import httpx
import pytest
import yaml

from tests.conformance.servers import METRICS_POLL_SECONDS, MODEL, Server, start_router, wait_for

pytestmark = pytest.mark.timeout(1200)
SESSION_HEADER = "X-Session-ID"
DONE = "vllm:request_success_total"
RUNNING = "vllm:num_requests_running"
WAITING = "vllm:num_requests_waiting"
# Long enough that a request is still decoding whenever the test looks at it: about as many
# tokens as the model's context (32768) leaves after the prompt, a minute or more on a CPU.
ENDLESS = {"max_tokens": 32000, "ignore_eos": True}
ABORT_SECONDS = 1.0


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
    """A streamed request in a thread; records when its first chunk came, closes on demand.
    It reads up to the first chunk only; the connection stays open until `close()`."""

    def __init__(
        self, url: str, body: dict[str, Any], session: str, headers: dict[str, str] | None = None
    ) -> None:
        self.first_chunk: float | None = None
        self.status: int | None = None
        self._stop = threading.Event()
        headers = {SESSION_HEADER: session, **(headers or {})}
        self._thread = threading.Thread(target=self._run, args=(url, body, headers), daemon=True)
        self._thread.start()

    def _run(self, url: str, body: dict[str, Any], headers: dict[str, str]) -> None:
        with (
            httpx.Client(timeout=120.0) as http,
            http.stream("POST", url, json={**body, "stream": True}, headers=headers) as response,
        ):
            self.status = response.status_code
            # Held in a name: a line iterator dropped early would close the connection.
            lines = response.iter_lines()
            for line in lines:
                if line.startswith("data: {"):
                    self.first_chunk = time.monotonic()
                    break
                if self._stop.is_set():
                    return  # leaving the block closes the connection
            # Read no further: the engine goes on generating, but the router and this process
            # stop spending a CPU on hundreds of chunks a second that the test does not need
            # (on a small machine that starved the test's own polling).
            self._stop.wait()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30.0)
        assert not self._thread.is_alive()


def replica_of(session: str, router: Server, engines: list[Server]) -> Server:
    def send() -> None:
        response = httpx.post(
            router.url + "/v1/chat/completions",
            json=chat("Which replica?", max_tokens=2),
            headers={SESSION_HEADER: session},
            timeout=60.0,
        )
        assert response.status_code == 200

    return engines[served_by(engines, send)]


def test_a_client_that_disconnects_aborts_its_request_in_vllm(
    router: Server, engines: list[Server]
) -> None:
    engine = replica_of("leaving", router, engines)
    url = router.url + "/v1/chat/completions"
    streamer = Streamer(url, chat("Go on forever.", **ENDLESS), "leaving")
    # Its first chunk shows it running; vLLM's /metrics answers slowly while it generates.
    wait_for(lambda: streamer.first_chunk, 120.0, "the first chunk")
    closed = time.monotonic()
    streamer.close()
    gauge_becomes(engine, RUNNING, 0, 10.0, "the request to stop")
    assert time.monotonic() - closed < ABORT_SECONDS


def in_flight(router: Server) -> float:
    """Requests the router has sent to the engines and not yet finished."""
    return router.metrics().get("llmservice_router_in_flight", 0.0)


def any_started(*streamers: Streamer) -> bool:
    return any(streamer.first_chunk is not None for streamer in streamers)


def gauge_reaches(engine: Server, gauge: str, value: int, timeout: float) -> bool:
    """`gauge_becomes` that answers False at its deadline instead of failing."""
    try:
        gauge_becomes(engine, gauge, value, timeout, gauge)
    except AssertionError:
        return False
    return True


def test_a_keys_priority_reaches_the_vllm_scheduler(
    router: Server, keyed_router: Server, engines: list[Server]
) -> None:
    """One sequence at a time: a request of the low-priority key queues, then one of the
    high-priority key; when the running request goes, vLLM's priority scheduler runs the
    later, higher one first (first come, first served would run the earlier one). Both
    routers place a session on the same replica, so the keyless one finds it.

    The setup (one request running while the other two wait) races the running request's
    own end: on a small CPU vLLM's /metrics answers only every few tens of seconds while it
    generates, so the running request is known by its first chunk and the low one as sent
    by the router before the high one is sent, and only the final state (two waiting) is
    read from vLLM. When the running request ends before that is seen, the order would
    prove nothing, so the setup starts again (three tries); the order itself is asserted
    only once the setup held."""
    engine = replica_of("ordered", router, engines)
    url = keyed_router.url + "/v1/chat/completions"
    for _ in range(3):
        streamers: list[Streamer] = []
        try:
            # The client's own `priority` is replaced by its key's.
            body = chat("Hold the slot.", **ENDLESS, priority=-1000)
            running = Streamer(url, body, "ordered", bearer("batch"))
            streamers.append(running)
            wait_for(partial(any_started, running), 120.0, "the first request to run")
            body = chat("Low.", **ENDLESS, priority=-1000)
            low = Streamer(url, body, "ordered", bearer("batch"))
            streamers.append(low)
            wait_for(lambda: in_flight(keyed_router) == 2, 30.0, "the router to send the low one")
            high = Streamer(url, chat("High.", **ENDLESS), "ordered", bearer("interactive"))
            streamers.append(high)
            if not gauge_reaches(engine, WAITING, 2, 120.0):
                continue
            running.close()
            wait_for(partial(any_started, high, low), 60.0, "a waiting request to run")
            assert high.first_chunk is not None
            assert low.first_chunk is None
            assert high.status == 200
            return
        finally:
            # Newest first: a waiting request's thread notices the close only once it got
            # its first chunk, which comes once the requests ahead of it are gone.
            for streamer in reversed(streamers):
                with contextlib.suppress(AssertionError):
                    streamer.close()
            gauge_becomes(engine, RUNNING, 0, 60.0, "every request to stop")
    pytest.fail("three times the running request ended before the other two were seen waiting")
