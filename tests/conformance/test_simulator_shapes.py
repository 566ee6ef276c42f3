"""The simulator answers what the real engine answers, in the same shapes.

Both get the same requests; bodies are compared key by key and type by type (a null on one
side matches anything: vLLM sends null for what a request did not ask for). Texts and
numbers differ, of course: the real engine serves random weights, the simulator words.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conformance.conftest import SPEC_FIELDS
from tests.conformance.servers import MODEL, Server, minimal_args, start_simulator

pytestmark = pytest.mark.timeout(1200)
TOKENS = 8
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "Say something."}]}
TEXT = {"model": MODEL, "prompt": "Say something."}
SAME_LENGTH = {"max_tokens": TOKENS, "ignore_eos": True}


@pytest.fixture(scope="module")
def simulator(
    addresses: Iterator[str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    sim = start_simulator(
        next(addresses), minimal_args(**SPEC_FIELDS), tmp_path_factory.mktemp("sim")
    )
    try:
        sim.wait_healthy(60.0)
        yield sim
    finally:
        sim.stop()


@pytest.fixture(scope="module")
def pair(simulator: Server, engines: list[Server]) -> dict[str, Server]:
    return {"sim": simulator, "vllm": engines[0]}


def differences(sim: Any, real: Any, path: str = "$") -> list[str]:
    """Where two JSON values differ in shape: keys, or types of non-null values."""
    if sim is None or real is None:
        return []
    if isinstance(sim, dict) and isinstance(real, dict):
        found = [f"{path}.{k}: only in the simulator" for k in sim.keys() - real.keys()]
        found += [f"{path}.{k}: only in vLLM" for k in real.keys() - sim.keys()]
        for key in sim.keys() & real.keys():
            found += differences(sim[key], real[key], f"{path}.{key}")
        return found
    if isinstance(sim, list) and isinstance(real, list):
        if bool(sim) != bool(real):
            return [f"{path}: empty on one side only"]
        return differences(sim[0], real[0], f"{path}[0]") if sim else []
    same = type(sim) is type(real)  # int is not float, bool is not int, as JSON clients see
    return [] if same else [f"{path}: {type(sim).__name__} vs {type(real).__name__}"]


def post(server: Server, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(server.url + path, json=body, timeout=60.0)


def stream(server: Server, path: str, body: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    """The JSON chunks of a streamed answer, and its last data line."""
    response = post(server, path, {**body, "stream": True})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    data = [ln.removeprefix("data: ") for ln in response.text.splitlines() if ln.startswith("data")]
    return [json.loads(d) for d in data[:-1]], data[-1]


def kinds(chunks: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Chunks by their part in a stream: role, token, finish and usage chunks."""
    out: dict[str, list[dict[str, Any]]] = {"role": [], "token": [], "finish": [], "usage": []}
    for chunk in chunks:
        if not chunk["choices"]:
            out["usage"].append(chunk)
        elif chunk["choices"][0].get("finish_reason") is not None:
            out["finish"].append(chunk)
        elif "role" in chunk["choices"][0].get("delta", {}):
            out["role"].append(chunk)
        else:
            out["token"].append(chunk)
    return out


@pytest.mark.parametrize(
    ("path", "body"),
    [("/v1/chat/completions", CHAT), ("/v1/completions", TEXT)],
    ids=["chat", "text"],
)
def test_completion_bodies_have_the_same_shape(
    pair: dict[str, Server], path: str, body: dict[str, Any]
) -> None:
    answers = {name: post(server, path, {**body, **SAME_LENGTH}) for name, server in pair.items()}
    assert {a.status_code for a in answers.values()} == {200}
    sim, real = (answers[n].json() for n in ("sim", "vllm"))
    assert differences(sim, real) == []
    assert sim["usage"]["completion_tokens"] == real["usage"]["completion_tokens"] == TOKENS


@pytest.mark.parametrize("usage", [True, False], ids=["with-usage", "without-usage"])
@pytest.mark.parametrize(
    ("path", "body"),
    [("/v1/chat/completions", CHAT), ("/v1/completions", TEXT)],
    ids=["chat", "text"],
)
def test_streamed_chunks_have_the_same_shapes(
    pair: dict[str, Server], path: str, body: dict[str, Any], usage: bool
) -> None:
    request = {**body, **SAME_LENGTH, "stream_options": {"include_usage": usage}}
    answers = {name: stream(server, path, request) for name, server in pair.items()}
    sim, real = (kinds(answers[n][0]) for n in ("sim", "vllm"))
    assert answers["sim"][1] == answers["vllm"][1] == "[DONE]"
    for kind in ("role", "token", "finish", "usage"):
        assert bool(sim[kind]) == bool(real[kind]), kind
        for one, other in zip(sim[kind], real[kind] * len(sim[kind]), strict=False):
            assert differences(one, other) == [], kind
        assert all(differences(c, real[kind][0]) == [] for c in real[kind]), kind
    assert len(sim["finish"]) == len(real["finish"]) == 1
    assert len(sim["usage"]) == len(real["usage"]) == (1 if usage else 0)
    if usage:
        assert sim["usage"][0]["usage"]["completion_tokens"] == TOKENS
        assert real["usage"][0]["usage"]["completion_tokens"] == TOKENS


def test_models_list_and_health_have_the_same_shape(pair: dict[str, Server]) -> None:
    models = {n: httpx.get(s.url + "/v1/models", timeout=10.0) for n, s in pair.items()}
    assert differences(models["sim"].json(), models["vllm"].json()) == []
    assert [m["id"] for m in models["vllm"].json()["data"]] == [MODEL]
    assert [m["id"] for m in models["sim"].json()["data"]] == [MODEL]
    health = {n: httpx.get(s.url + "/health", timeout=10.0) for n, s in pair.items()}
    assert [(h.status_code, h.content) for h in health.values()] == [(200, b"")] * 2


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({**CHAT, "model": "no-such-model"}, 404),
        ({**CHAT, "temperature": -1}, 400),
        ({**CHAT, "max_tokens": 0}, 400),
        ({**CHAT, "stream_options": {"include_usage": True}}, 400),
    ],
    ids=["unknown-model", "negative-temperature", "zero-max-tokens", "stream-options-alone"],
)
def test_errors_have_the_same_status_and_body(
    pair: dict[str, Server], body: dict[str, Any], status: int
) -> None:
    answers = {n: post(s, "/v1/chat/completions", body) for n, s in pair.items()}
    assert [a.status_code for a in answers.values()] == [status, status]
    sim, real = (answers[n].json() for n in ("sim", "vllm"))
    assert differences(sim, real) == []
    for key in ("type", "param", "code"):
        assert sim["error"][key] == real["error"][key], key


def families(server: Server) -> dict[str, tuple[str, frozenset[str]]]:
    text = httpx.get(server.url + "/metrics", timeout=10.0).text
    out = {}
    for family in text_string_to_metric_families(text):
        labels = {name for s in family.samples for name in s.labels} - {"le", "quantile"}
        out[family.name] = (family.type, frozenset(labels))
    return out


def test_every_simulated_metric_exists_in_vllm_with_its_type_and_labels(
    pair: dict[str, Server],
) -> None:
    sim, real = families(pair["sim"]), families(pair["vllm"])
    simulated = {n: f for n, f in sim.items() if n.startswith("vllm:")}
    assert len(simulated) >= 20
    assert {n: real.get(n) for n in simulated} == simulated
