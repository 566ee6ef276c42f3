"""API keys: requests without a known key are refused, keys never reach logs or upstream."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from llmservice.router.auth import load_api_keys, parse_api_keys
from llmservice.router.clients import DEFAULT_PRIORITY, Client

from .backends import FakeBackend, Mode
from .conftest import CHAT, RouterServer, config, run

KEY = "sk-team-a-0123456789abcdef"


def _keys_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "keys.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_only_known_keys_reach_the_engine(tmp_path: Path) -> None:
    keys = load_api_keys(_keys_file(tmp_path, f"keys:\n  - name: team-a\n    key: {KEY}\n"))

    async def scenario() -> None:
        async with FakeBackend(Mode.JSON) as backend:
            async with (
                RouterServer(config(backend.url), api_keys=keys) as router,
                aiohttp.ClientSession() as client,
            ):
                url = router.url + "/v1/chat/completions"
                for headers in ({}, {"Authorization": "Bearer sk-wrong-0123456789abcdef"}):
                    async with client.post(url, json=CHAT, headers=headers) as response:
                        assert response.status == 401
                        body = await response.json()
                        assert body["error"]["code"] == "invalid_api_key"
                        assert body["error"]["request_id"]
                async with client.get(router.url + "/v1/models") as response:
                    assert response.status == 401
                async with client.get(router.url + "/healthz") as response:
                    assert response.status == 200
                auth = {"Authorization": f"Bearer {KEY}"}
                async with client.post(url, json=CHAT, headers=auth) as response:
                    assert response.status == 200
            assert len(backend.requests) == 1
            assert KEY not in router.log.getvalue()
            upstream_headers = {k.lower() for k in backend.requests[0].headers}
            assert "authorization" not in upstream_headers

    run(scenario())


def test_a_401_names_the_bearer_scheme(tmp_path: Path) -> None:
    keys = load_api_keys(_keys_file(tmp_path, f"keys:\n  - name: team-a\n    key: {KEY}\n"))

    async def scenario() -> None:
        async with (
            RouterServer(config(), api_keys=keys) as router,
            aiohttp.ClientSession() as client,
        ):
            async with client.post(router.url + "/v1/completions", json={}) as response:
                assert response.status == 401
                assert response.headers["WWW-Authenticate"] == "Bearer"
            async with client.get(router.url + "/healthz") as response:
                assert "WWW-Authenticate" not in response.headers

    run(scenario())


def test_the_old_format_still_loads(tmp_path: Path) -> None:
    keys = load_api_keys(_keys_file(tmp_path, f"keys:\n  - name: team-a\n    key: {KEY}\n"))
    client = keys.authenticate(f"Bearer {KEY}".encode())
    assert client == Client(name="team-a")
    assert keys.authenticate(b"Bearer " + KEY.encode()[:-1]) is None


POLICIES = f"""
defaults:
  priority: 2
  maxQueued: 50
  requestsPerMinute: 100
keys:
  - name: batch-jobs
    key: {KEY}
    priority: 1
    maxQueued: 10
    requestsPerMinute: 200
    tokensPerMinute: 200000
  - name: interactive
    key: sk-interactive-0123456789
    priority: 10
  - name: plain
    key: sk-plain-0123456789abcdef
"""


def test_each_key_takes_omitted_fields_from_defaults_then_the_client_defaults() -> None:
    keys = parse_api_keys(POLICIES)
    assert sorted(keys.clients.values(), key=lambda c: c.name) == [
        Client("batch-jobs", priority=1, max_queued=10, requests_per_minute=200,
               tokens_per_minute=200_000),
        Client("interactive", priority=10, max_queued=50, requests_per_minute=100),
        Client("plain", priority=2, max_queued=50, requests_per_minute=100),
    ]  # fmt: skip
    without_defaults = parse_api_keys(f"keys:\n  - {{name: a, key: {KEY}, maxQueued: 3}}\n")
    assert list(without_defaults.clients.values()) == [
        Client("a", priority=DEFAULT_PRIORITY, max_queued=3)
    ]


SECOND = "sk-second-0123456789abcdef"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            f"keys:\n  - {{name: a, key: {KEY}}}\n  - {{name: b, key: {SECOND}, maxQueue: 1}}\n",
            r"keys\[1\] \(b\)\.maxQueue: Extra inputs are not permitted",
            id="unknown field in a key",
        ),
        pytest.param(
            f"defaults: {{burst: 3}}\nkeys:\n  - {{name: a, key: {KEY}}}\n",
            r"defaults\.burst: Extra inputs are not permitted",
            id="unknown field in defaults",
        ),
        pytest.param(
            f"keys:\n  - {{name: a, key: {KEY}}}\n  - {{name: b, key: {SECOND}, maxQueued: -1}}\n",
            r"keys\[1\] \(b\)\.maxQueued: Input should be greater than or equal to 1",
            id="negative limit",
        ),
        pytest.param(
            f"keys:\n  - {{name: a, key: {KEY}, requestsPerMinute: 0}}\n",
            r"keys\[0\] \(a\)\.requestsPerMinute: Input should be greater than or equal to 1",
            id="zero limit",
        ),
        pytest.param(
            f"keys:\n  - {{name: a, key: {KEY}, priority: 0}}\n",
            r"keys\[0\] \(a\)\.priority: Input should be greater than or equal to 1",
            id="zero priority",
        ),
        pytest.param(
            f"defaults: {{tokensPerMinute: 0}}\nkeys:\n  - {{name: a, key: {KEY}}}\n",
            r"defaults\.tokensPerMinute: Input should be greater than or equal to 1",
            id="zero default",
        ),
        pytest.param(
            f"keys:\n  - {{name: a, key: {KEY}, priority: '5'}}\n",
            r"keys\[0\] \(a\)\.priority: Input should be a valid integer",
            id="a number as a string",
        ),
        pytest.param(
            f"keys:\n  - {{name: a, key: {KEY}}}\n  - {{name: a, key: {SECOND}}}\n",
            r"keys\[1\] \(a\)\.name: the same name as keys\[0\]",
            id="duplicate name",
        ),
        pytest.param(
            f"keys:\n  - {{name: a, key: {KEY}}}\n  - {{name: b, key: {SECOND}}}\n"
            f"  - {{name: c, key: {KEY}}}\n",
            r"keys\[2\] \(c\)\.key: the same key as keys\[0\] \(a\)",
            id="duplicate key",
        ),
        pytest.param(
            "keys:\n  - {name: a, key: sk-0123456789ab}\n",
            r"keys\[0\] \(a\)\.key: String should have at least 16 characters",
            id="short key",
        ),
        pytest.param(
            f"keys:\n  - {{key: {KEY}}}\n",
            r"keys\[0\]\.name: Field required",
            id="entry without a name",
        ),
        pytest.param("keys: []\n", r"keys: List should have at least 1 item", id="no keys"),
        pytest.param("- a\n- b\n", r"must be a mapping", id="not a mapping"),
        pytest.param("keys: [unclosed\n", r"not valid YAML \(line 2", id="not YAML"),
    ],
)
def test_bad_keys_files_name_the_entry_and_field_never_the_key(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as raised:
        parse_api_keys(text, "API keys file keys.yaml")
    assert str(raised.value).startswith("API keys file keys.yaml ")
    for key in (KEY, SECOND, "sk-0123456789ab"):
        assert key not in str(raised.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("keys: []\n", "keys"),
        ("keys:\n  - name: a\n    key: short\n", "at least 16"),
        ("keys:\n  - name: a\n    key: sk-0123456789abcdef\n    extra: 1\n", "Extra inputs"),
        ("keys: [unclosed\n", "not valid YAML"),
        (f"keys:\n  - {{name: a, key: {KEY}}}\n  - {{name: b, key: {KEY}}}\n", "same key"),
    ],
)
def test_bad_keys_files_fail_closed(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_api_keys(_keys_file(tmp_path, text))


def test_the_example_keys_file_is_valid() -> None:
    example = Path(__file__).resolve().parents[3] / "examples" / "api-keys" / "keys.yaml"
    keys = load_api_keys(str(example))
    assert {client.name: client.priority for client in keys.clients.values()} == {
        "interactive": 10,
        "batch-jobs": 1,
    }


def test_missing_keys_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read API keys file"):
        load_api_keys(str(tmp_path / "absent.yaml"))
