"""Proof that a process runs the installed product, read from the kernel, not from records.

`/proc/PID/cmdline` names the interpreter it was started with; `/proc/PID/maps` lists the
files it has mapped, among them the compiled extensions (pydantic-core, uvloop, ...) of the
site-packages it really imports from. The product's virtualenv must be there and the
development virtualenv must not.
"""

from __future__ import annotations

import sys
from pathlib import Path

from llmservice.sandbox.product import Product


def mapped_files(pid: int) -> set[str]:
    """Paths of the files mapped into the process."""
    lines = Path(f"/proc/{pid}/maps").read_text(encoding="utf-8").splitlines()
    return {line.split(None, 5)[5] for line in lines if len(line.split(None, 5)) == 6}


def assert_runs_product(pid: int, product: Product) -> None:
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    assert argv[0] == str(product.python), argv
    assert argv[1:4] == ["-P", "-m", "llmservice.cli"], argv
    files = mapped_files(pid)
    site = str(product.prefix) + "/"
    development = str(Path(sys.prefix)) + "/"
    assert any(f.startswith(site) for f in files), f"nothing mapped from {site}"
    assert not [f for f in files if f.startswith(development)], f"maps files from {development}"
