"""The product's cache: keyed by what the wheel holds, and pruned only when unused."""

from __future__ import annotations

import fcntl
import os
import time
import zipfile
from pathlib import Path

import pytest

import llmservice
from llmservice.sandbox import product
from llmservice.sandbox.product import Product, content_digest, source_checkout


def wheel(path: Path, files: dict[str, str], date: tuple[int, ...]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in files.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=date), text)
    return path


FILES = {
    "llmservice/cli.py": "print('hi')\n",
    "llmservice/templates/a.yaml.j2": "kind: A\n",
    "llmservice-0.1.0.dist-info/RECORD": "llmservice/cli.py,sha256=x,12\n",
}


def test_digest_ignores_timestamps_and_record(tmp_path: Path) -> None:
    first = wheel(tmp_path / "a.whl", FILES, (2020, 1, 1, 0, 0, 0))
    later = {**FILES, "llmservice-0.1.0.dist-info/RECORD": "listed in another order\n"}
    second = wheel(tmp_path / "b.whl", later, (2026, 6, 1, 12, 0, 0))
    assert first.read_bytes() != second.read_bytes()
    assert content_digest(first) == content_digest(second)


@pytest.mark.parametrize(
    "change",
    [
        {"llmservice/templates/a.yaml.j2": "kind: B\n"},  # a template edited
        {"llmservice/templates/b.yaml.j2": "kind: B\n"},  # a file added
    ],
)
def test_digest_changes_with_what_ships(tmp_path: Path, change: dict[str, str]) -> None:
    date = (2020, 1, 1, 0, 0, 0)
    before = wheel(tmp_path / "a.whl", FILES, date)
    after = wheel(tmp_path / "b.whl", FILES | change, date)
    assert content_digest(before) != content_digest(after)


def test_a_checkout_is_recognized_by_its_layout() -> None:
    root = source_checkout()
    assert root is not None
    assert Path(llmservice.__file__).parent == root / "operator" / "llmservice"


def test_the_product_runs_its_own_interpreter_without_the_current_directory() -> None:
    installed = Product(Path("/cache/product/0123/venv/bin/python"))
    assert installed.prefix == Path("/cache/product/0123/venv")
    assert installed.console_script == Path("/cache/product/0123/venv/bin/llmservice")
    assert installed.command("sim") == [
        "/cache/product/0123/venv/bin/python", "-P", "-m", "llmservice.cli", "sim",
    ]  # fmt: skip


def make_home(root: Path, name: str, age_seconds: float) -> Path:
    home = root / name
    (home / "venv").mkdir(parents=True)
    marker = home / "complete"
    marker.touch()
    used = time.time() - age_seconds
    os.utime(marker, (used, used))
    return home


def test_only_virtualenvs_unused_for_long_are_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMSERVICE_CACHE_DIR", str(tmp_path))
    root = product.products_dir()
    week = product.UNUSED_SECONDS
    current = make_home(root, "current", 2 * week)
    recent = make_home(root, "recent", week / 2)
    old = make_home(root, "old", 2 * week)
    busy = make_home(root, "busy", 2 * week)
    with (root / "busy.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # being installed by someone else
        product._remove_unused(keep="current")
    assert current.exists()
    assert recent.exists()
    assert busy.exists()
    assert not old.exists()
