"""Rotating API keys: a changed keys file is applied, a broken one is rejected and counted.

The files are real and changed as a kubelet changes a mounted Secret (a new directory and a
swap of the ``..data`` symlink); the reloader's check is driven directly, or its watch runs
inside a router on a real socket and the test polls with a deadline.
"""

from __future__ import annotations

import logging
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from llmservice.router.clients import Client
from llmservice.router.keys_metrics import ApiKeysMetrics
from llmservice.router.keys_reload import ApiKeysFile

from .backends import FakeBackend, Mode
from .conftest import CHAT, RouterServer, config, run, until
from .secret_volume import SecretVolume

OLD = "sk-old-0123456789abcdef"
NEW = "sk-new-0123456789abcdef"
OLD_FILE = f"keys:\n  - {{name: team-a, key: {OLD}}}\n"
NEW_FILE = f"defaults: {{priority: 3}}\nkeys:\n  - {{name: team-a, key: {NEW}, maxQueued: 5}}\n"
BROKEN_FILE = f"keys:\n  - {{name: team-a, key: {NEW}, maxQueued: 0}}\n"


def bearer(key: str) -> bytes:
    return f"Bearer {key}".encode()


def metrics(keys_file: ApiKeysFile) -> dict[str, float]:
    registry = CollectorRegistry()
    registry.register(ApiKeysMetrics(keys_file))
    text = generate_latest(registry).decode()
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.name.endswith("_created")
    }


def test_a_swapped_secret_file_replaces_the_keys(tmp_path: Path) -> None:
    volume = SecretVolume(tmp_path / "api-keys", {"keys.yaml": OLD_FILE})
    keys_file = ApiKeysFile.load(volume.path("keys.yaml"))
    assert keys_file.check() is False  # nothing changed yet
    volume.update({"keys.yaml": NEW_FILE})
    assert keys_file.check() is True
    assert keys_file.keys.authenticate(bearer(OLD)) is None
    assert keys_file.keys.authenticate(bearer(NEW)) == Client("team-a", priority=3, max_queued=5)
    assert keys_file.check() is False  # seen once, not reloaded again
    assert metrics(keys_file) == {
        "llmservice_router_api_keys_reload_failures_total": 0.0,
        "llmservice_router_api_keys_file_valid": 1.0,
        "llmservice_router_api_keys": 1.0,
    }


def test_a_broken_file_keeps_the_last_good_keys_until_the_file_is_good_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    volume = SecretVolume(tmp_path / "api-keys", {"keys.yaml": OLD_FILE})
    keys_file = ApiKeysFile.load(volume.path("keys.yaml"))
    in_use = keys_file.keys
    with caplog.at_level(logging.INFO, logger="llmservice.router.keys"):
        volume.update({"keys.yaml": BROKEN_FILE})
        assert keys_file.check() is False
        assert keys_file.keys is in_use
        assert keys_file.valid is False
        assert metrics(keys_file)["llmservice_router_api_keys_file_valid"] == 0.0
        assert metrics(keys_file)["llmservice_router_api_keys_reload_failures_total"] == 1.0
        rejected = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(rejected) == 1
        assert "keys[0] (team-a).maxQueued" in rejected[0].getMessage()
        assert "keeping the last good keys" in rejected[0].getMessage()

        # The old content back: valid again, without a reload.
        volume.update({"keys.yaml": OLD_FILE})
        assert keys_file.check() is False
        assert keys_file.valid is True
        assert keys_file.keys is in_use

        volume.update({"keys.yaml": "keys: [unclosed\n"})
        assert keys_file.check() is False
        volume.update({"keys.yaml": NEW_FILE})
        assert keys_file.check() is True
        assert keys_file.valid is True
    assert metrics(keys_file)["llmservice_router_api_keys_reload_failures_total"] == 2.0
    for record in caplog.records:
        assert OLD not in record.getMessage()
        assert NEW not in record.getMessage()


def test_a_file_that_disappears_is_rejected(tmp_path: Path) -> None:
    volume = SecretVolume(tmp_path / "api-keys", {"keys.yaml": OLD_FILE})
    keys_file = ApiKeysFile.load(volume.path("keys.yaml"))
    volume.update({"other.yaml": "x"})  # the Secret lost its keys.yaml
    assert keys_file.check() is False
    assert keys_file.valid is False
    assert keys_file.keys.authenticate(bearer(OLD)) is not None


def test_a_plain_file_rewritten_in_place_is_noticed(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text(OLD_FILE, encoding="utf-8")
    keys_file = ApiKeysFile.load(str(path))
    path.write_text(NEW_FILE, encoding="utf-8")
    assert keys_file.check() is True
    assert keys_file.keys.authenticate(bearer(NEW)) is not None


def test_a_bad_file_at_start_fails_closed(tmp_path: Path) -> None:
    volume = SecretVolume(tmp_path / "api-keys", {"keys.yaml": BROKEN_FILE})
    with pytest.raises(ValueError, match=r"keys\[0\] \(team-a\)\.maxQueued"):
        ApiKeysFile.load(volume.path("keys.yaml"))


def test_a_router_applies_a_rotated_key_without_dropping_a_request_in_flight(
    tmp_path: Path,
) -> None:
    volume = SecretVolume(tmp_path / "api-keys", {"keys.yaml": OLD_FILE})
    keys_file = ApiKeysFile.load(volume.path("keys.yaml"), interval=0.05)
    url_path = "/v1/chat/completions"

    async def status(client: aiohttp.ClientSession, url: str, key: str) -> int:
        headers = {"Authorization": f"Bearer {key}"}
        async with client.post(url, json=CHAT, headers=headers) as response:
            await response.read()
            return response.status

    async def scenario() -> None:
        async with FakeBackend(Mode.STREAM, chunks=20, delay=0.05) as backend:
            async with (
                RouterServer(config(backend.url), api_keys_file=keys_file) as router,
                aiohttp.ClientSession() as client,
            ):
                url = router.url + url_path
                headers = {"Authorization": f"Bearer {OLD}"}
                async with client.post(url, json=CHAT, headers=headers) as in_flight:
                    assert in_flight.status == 200
                    await backend.stream_started.wait()
                    before = router.app.api_keys
                    volume.update({"keys.yaml": NEW_FILE})
                    await until(lambda: router.app.api_keys is not before, within=10)
                    assert await status(client, url, NEW) == 200
                    headers = {"Authorization": f"Bearer {OLD}"}
                    async with client.post(url, json=CHAT, headers=headers) as refused:
                        assert refused.status == 401
                        assert refused.headers["WWW-Authenticate"] == "Bearer"
                    body = await in_flight.read()
                    assert body.rstrip().endswith(b"data: [DONE]")

                volume.update({"keys.yaml": BROKEN_FILE})
                await until(lambda: not keys_file.valid, within=10)
                assert await status(client, url, NEW) == 200
                async with client.get(router.url + "/metrics") as response:
                    text = await response.text()
                assert "llmservice_router_api_keys_file_valid 0.0" in text
                assert "llmservice_router_api_keys_reload_failures_total 1.0" in text
            assert OLD not in router.log.getvalue()
            assert NEW not in router.log.getvalue()

    run(scenario())
