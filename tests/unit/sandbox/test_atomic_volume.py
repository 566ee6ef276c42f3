"""Secret and ConfigMap volumes are written and updated in the kubelet's atomic layout."""

from __future__ import annotations

import os
from pathlib import Path

from llmservice.sandbox.runtime.atomic_volume import DATA, write_volume


def versions(target: Path) -> list[str]:
    """The timestamped version directories (not the ..data symlink)."""
    return sorted(
        p.name for p in target.iterdir() if p.name.startswith("..") and not p.is_symlink()
    )


def test_files_are_symlinks_through_data_to_one_version(tmp_path: Path) -> None:
    target = tmp_path / "api-keys"
    assert write_volume(target, {"keys.yaml": b"one", "nested/file": b"deep"}) is True
    assert (target / "keys.yaml").read_bytes() == b"one"
    assert (target / "nested" / "file").read_bytes() == b"deep"
    assert os.readlink(target / "keys.yaml") == f"{DATA}/keys.yaml"
    assert os.readlink(target / "nested") == f"{DATA}/nested"
    assert os.readlink(target / DATA) == versions(target)[0]
    assert len(versions(target)) == 1


def test_an_update_swaps_data_and_removes_the_old_version(tmp_path: Path) -> None:
    target = tmp_path / "api-keys"
    write_volume(target, {"keys.yaml": b"one", "gone.yaml": b"x"})
    before = os.stat(target / "keys.yaml").st_ino
    old = versions(target)
    assert write_volume(target, {"keys.yaml": b"two", "new.yaml": b"y"}) is True
    assert (target / "keys.yaml").read_bytes() == b"two"
    assert os.stat(target / "keys.yaml").st_ino != before  # a new file, as a kubelet makes
    assert (target / "new.yaml").read_bytes() == b"y"
    assert not (target / "gone.yaml").exists()
    assert not (target / "gone.yaml").is_symlink()
    assert versions(target) != old
    assert len(versions(target)) == 1
    assert not (target / "..data_tmp").exists()


def test_unchanged_content_writes_nothing(tmp_path: Path) -> None:
    target = tmp_path / "api-keys"
    write_volume(target, {"keys.yaml": b"one"})
    version = versions(target)
    assert write_volume(target, {"keys.yaml": b"one"}) is False
    assert versions(target) == version


def test_an_open_file_keeps_its_old_content_while_the_path_shows_the_new(
    tmp_path: Path,
) -> None:
    target = tmp_path / "api-keys"
    write_volume(target, {"keys.yaml": b"one"})
    with (target / "keys.yaml").open("rb") as reader:
        write_volume(target, {"keys.yaml": b"two"})
        assert reader.read() == b"one"
    assert (target / "keys.yaml").read_bytes() == b"two"
