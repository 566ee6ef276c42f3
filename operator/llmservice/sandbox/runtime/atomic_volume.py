"""Writing a Secret or ConfigMap volume as a kubelet does, so that updates are atomic.

The layout is the kubelet's (its AtomicWriter)::

    <volume>/..2026_12_04_05_31_02.1234/keys.yaml   the files of one version
    <volume>/..data -> ..2026_12_04_05_31_02.1234   the version in use
    <volume>/keys.yaml -> ..data/keys.yaml           what the container opens

An update writes the new version into a fresh directory, swaps ``..data`` to it with one
rename (readers see the whole old version or the whole new one, never a mix or a half-written
file), adjusts the visible symlinks for keys added or removed, and removes the old version.
Processes that watch their files for changes (the router's API keys) see exactly what they
would see in a cluster.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

__all__ = ["DATA", "write_volume"]

DATA = "..data"
_STAGED = "..data_tmp"


def _files_in(directory: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(directory)): path.read_bytes()
        for path in directory.rglob("*")
        if path.is_file()
    }


def _in_use(target: Path) -> dict[str, bytes] | None:
    data = target / DATA
    if not data.is_symlink():
        return None
    return _files_in(target / os.readlink(data))


def write_volume(target: Path, files: Mapping[str, bytes]) -> bool:
    """Make `target` hold exactly `files` (relative path -> content); True if it changed."""
    target.mkdir(parents=True, exist_ok=True)
    if _in_use(target) == dict(files):
        return False
    data = target / DATA
    old = os.readlink(data) if data.is_symlink() else None
    stamp = time.strftime("..%Y_%m_%d_%H_%M_%S.", time.gmtime())
    version = Path(tempfile.mkdtemp(prefix=stamp, dir=target))
    for relative, content in files.items():
        path = version / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    staged = target / _STAGED
    staged.unlink(missing_ok=True)
    staged.symlink_to(version.name)
    os.replace(staged, data)  # the atomic step
    visible = {relative.split("/", 1)[0] for relative in files}
    for name in visible:
        link = target / name
        if not link.is_symlink():
            link.unlink(missing_ok=True)  # a plain file left by an older layout
            link.symlink_to(f"{DATA}/{name}")
    for entry in target.iterdir():
        if not entry.name.startswith("..") and entry.name not in visible:
            entry.unlink()
    if old is not None:
        shutil.rmtree(target / old, ignore_errors=True)
    return True
