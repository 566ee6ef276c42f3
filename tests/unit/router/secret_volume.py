"""A directory laid out as a kubelet lays out a mounted Secret volume, updated as it does.

``keys.yaml -> ..data/keys.yaml``, ``..data -> ..<timestamp>``: an update writes a new
timestamped directory, swaps ``..data`` to it with one rename, and removes the old one.
"""

from __future__ import annotations

import itertools
import os
import shutil
from pathlib import Path

DATA = "..data"


class SecretVolume:
    def __init__(self, root: Path, files: dict[str, str]) -> None:
        self.root = root
        self._versions = itertools.count()
        root.mkdir(parents=True, exist_ok=True)
        self.update(files)
        for name in files:
            (root / name).symlink_to(f"{DATA}/{name}")

    def path(self, name: str) -> str:
        return str(self.root / name)

    def update(self, files: dict[str, str]) -> None:
        version = self.root / f"..2026_12_04_00_00_00.{next(self._versions)}"
        version.mkdir()
        for name, text in files.items():
            (version / name).write_text(text, encoding="utf-8")
        link = self.root / DATA
        old = link.resolve() if link.is_symlink() else None
        staged = self.root / "..data_tmp"
        staged.symlink_to(version.name)
        os.replace(staged, link)
        if old is not None:
            shutil.rmtree(old)
