"""API keys: requests without a known key are refused, keys never reach logs or upstream."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from llmservice.router.auth import load_api_keys

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


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("keys: []\n", "keys"),
        ("keys:\n  - name: a\n    key: short\n", "at least 16"),
        ("keys:\n  - name: a\n    key: sk-0123456789abcdef\n    extra: 1\n", "extra"),
        ("keys: [unclosed\n", "not valid YAML"),
        (f"keys:\n  - {{name: a, key: {KEY}}}\n  - {{name: b, key: {KEY}}}\n", "repeats a key"),
    ],
)
def test_bad_keys_files_fail_closed(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_api_keys(_keys_file(tmp_path, text))


def test_missing_keys_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read API keys file"):
        load_api_keys(str(tmp_path / "absent.yaml"))
