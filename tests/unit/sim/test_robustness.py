"""Whatever a client sends, the simulator answers with a 2xx or a 4xx, never a 500 or a hang."""

from __future__ import annotations

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import llmservice.sim
from llmservice.sim import SimServer

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 10**7)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "model": st.sampled_from(["llama", "gpt-3.5-turbo", "other"]) | JSON,
        "messages": st.lists(
            st.fixed_dictionaries({"role": st.sampled_from(["user", "system"]), "content": JSON}),
            max_size=3,
        )
        | JSON,
        "prompt": st.text(max_size=50) | st.lists(st.integers(-1, 200_000), max_size=5) | JSON,
        "max_tokens": st.integers(-2, 5000) | JSON,
        "stream": st.booleans() | JSON,
        "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}) | JSON,
        "stop": st.text(max_size=5) | JSON,
        "temperature": st.floats(-1, 3, allow_nan=False) | JSON,
        "n": st.integers(0, 3),
    },
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(["/v1/chat/completions", "/v1/completions"]), body=FIELDS)
def test_random_requests_get_2xx_or_4xx(sim: SimServer, path: str, body: dict[str, object]) -> None:
    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, int) and max_tokens > 64:
        body["max_tokens"] = 64  # keep each example quick
    with httpx.Client(base_url=sim.url, timeout=30) as client:
        r = client.post(path, json=body)
    assert 200 <= r.status_code < 500, r.text
    if r.status_code >= 400:
        assert set(r.json()["error"]) == {"message", "type", "param", "code"}


@settings(max_examples=50, deadline=None)
@given(raw=st.binary(max_size=200))
def test_random_bytes_never_fail_the_server(sim: SimServer, raw: bytes) -> None:
    with httpx.Client(base_url=sim.url, timeout=30) as client:
        r = client.post("/v1/completions", content=raw)
    assert r.status_code in (200, 400, 404), r.text


def test_non_finite_numbers(sim: SimServer) -> None:
    raw = b'{"prompt": "x", "temperature": NaN, "max_tokens": 2}'
    with httpx.Client(base_url=sim.url, timeout=30) as client:
        assert client.post("/v1/completions", content=raw).status_code == 400


def test_public_names_are_pinned() -> None:
    assert sorted(llmservice.sim.__all__) == [
        "Engine",
        "PROFILES",
        "ParsedArgs",
        "Sequence",
        "SimApp",
        "SimConfig",
        "SimMetrics",
        "SimServer",
        "TimingProfile",
        "create_app",
        "parse_args",
    ]
