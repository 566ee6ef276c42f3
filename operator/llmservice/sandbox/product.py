"""The installed product: llmservice built as a wheel and installed without extras.

What ships is the wheel, installed with no extras, as the image does; the Dockerfile runs
the same two commands (`pip wheel --no-deps`, then `pip install --no-compile` of the wheel).
The packaging test and the sandbox's Pods run that product, never the development
virtualenv, so a dependency declared only in an extra, or a file left out of the wheel,
fails there as it would in the image.

`ensure_product` builds the wheel from a copy of the files the image's build context holds
(a clean copy: no stale `build/` or `*.egg-info` of the checkout can slip into the wheel),
and installs it into a virtualenv cached under the cache root, next to the Kubernetes
binaries, by the wheel's content hash. An unchanged checkout reuses its virtualenv; any
change to what ships gets a fresh one. A lock file makes concurrent callers (a test and a
sandbox, say) build one virtualenv, not two half ones.

When llmservice runs from an installed wheel rather than a source checkout, the running
interpreter already is the product and is used as it is.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from llmservice.sandbox.errors import SandboxError
from llmservice.sandbox.locking import exclusive_lock
from llmservice.sandbox.progress import Progress
from llmservice.sandbox.versions import cache_root

PACKAGE_DIR = Path(__file__).resolve().parents[1]
# The wheel is built from these, and only these: the image's build context holds the same
# (see .dockerignore and the Dockerfile's COPY lines).
BUILD_INPUTS = ("pyproject.toml", "README.md", "operator")
_LEFT_OUT = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
# The two pip steps, word for word the Dockerfile's: the wheel alone, then the wheel with
# its runtime dependencies and no extras.
PIP_WHEEL = ("wheel", "--no-deps", "--wheel-dir")
PIP_INSTALL = ("install", "--no-compile")
DIGEST_CHARS = 16
# A virtualenv nobody used for this long is removed when another one is made (each is
# about 200 MB). Long enough that a sandbox left running is never pulled from under it.
UNUSED_SECONDS = 7 * 24 * 3600.0
BUILD_TIMEOUT = 600.0
INSTALL_TIMEOUT = 1200.0
_COMPLETE = "complete"


@dataclass(frozen=True)
class Product:
    """An interpreter with llmservice installed from its wheel, and how to run it."""

    python: Path
    # The wheel it was installed from; None when the running interpreter is the product.
    wheel: Path | None = None

    @property
    def prefix(self) -> Path:
        """The virtualenv (or installation) the interpreter belongs to."""
        return self.python.parent.parent

    @property
    def console_script(self) -> Path:
        """`llmservice`, the entry point the image runs."""
        return self.python.parent / "llmservice"

    def command(self, *args: str) -> list[str]:
        """`llmservice ARGS` on the product's interpreter.

        `-P` keeps the current directory off `sys.path`, so a process started from inside
        a checkout still imports the installed package, never the source next to it.
        """
        return [str(self.python), "-P", "-m", "llmservice.cli", *args]


def source_checkout() -> Path | None:
    """The repository root when llmservice is imported from `operator/` of a checkout."""
    root = PACKAGE_DIR.parents[1]
    if PACKAGE_DIR.parent.name == "operator" and (root / "pyproject.toml").is_file():
        return root
    return None


def products_dir() -> Path:
    return cache_root() / "product"


def ensure_product(progress: Progress) -> Product:
    """The product to run: built and installed from this checkout, or the running one."""
    source = source_checkout()
    if source is None:
        progress.say(f"llmservice runs from an installed wheel: using {sys.executable}")
        return Product(Path(sys.executable))
    with tempfile.TemporaryDirectory(prefix="llmservice-wheel-") as scratch:
        with progress.step("building the llmservice wheel"):
            built = build_wheel(source, Path(scratch))
        digest = content_digest(built)[:DIGEST_CHARS]
        home = products_dir() / digest
        with exclusive_lock(products_dir() / f"{digest}.lock"):
            if not (home / _COMPLETE).is_file():
                with progress.step(f"installing {built.name} ({digest}) without extras"):
                    install(built, home)
            else:
                progress.say(f"reusing the virtualenv of {built.name} ({digest})")
            (home / _COMPLETE).touch()
    _remove_unused(keep=digest)
    wheel = next(home.glob("llmservice-*.whl"))
    return Product(home / "venv" / "bin" / "python", wheel)


def build_wheel(source: Path, scratch: Path) -> Path:
    """`pip wheel --no-deps` on a clean copy of the build inputs; the wheel's path."""
    tree = scratch / "source"
    tree.mkdir()
    for name in BUILD_INPUTS:
        path = source / name
        if path.is_dir():
            shutil.copytree(path, tree / name, ignore=_LEFT_OUT)
        else:
            shutil.copy2(path, tree / name)
    dist = scratch / "dist"
    _run(
        [sys.executable, "-m", "pip", *PIP_WHEEL, str(dist), str(tree)],
        what="building the llmservice wheel",
        timeout=BUILD_TIMEOUT,
        log=scratch / "wheel.log",
    )
    wheels = sorted(dist.glob("llmservice-*.whl"))
    if len(wheels) != 1:
        raise SandboxError(f"pip wheel made {len(wheels)} llmservice wheels in {dist}, not one")
    return wheels[0]


def content_digest(wheel: Path) -> str:
    """SHA-256 over the wheel's file names and contents, not its zip metadata.

    Two builds of the same source differ only in timestamps, so they share a digest.
    RECORD is left out: it only lists the other files' hashes.
    """
    digest = hashlib.sha256()
    with zipfile.ZipFile(wheel) as archive:
        for name in sorted(archive.namelist()):
            if name.endswith(".dist-info/RECORD"):
                continue
            digest.update(name.encode() + b"\0")
            digest.update(hashlib.sha256(archive.read(name)).digest())
    return digest.hexdigest()


def install(wheel: Path, home: Path) -> None:
    """A fresh virtualenv in `home/venv` with the wheel installed, no extras."""
    shutil.rmtree(home, ignore_errors=True)  # what an interrupted install left
    home.mkdir(parents=True)
    kept = shutil.copy2(wheel, home / wheel.name)
    venv = home / "venv"
    log = home / "install.log"
    _run([sys.executable, "-m", "venv", str(venv)], "creating a virtualenv", 120.0, log)
    _run(
        [str(venv / "bin" / "python"), "-m", "pip", *PIP_INSTALL, str(kept)],
        what=f"installing {wheel.name}",
        timeout=INSTALL_TIMEOUT,
        log=log,
    )


def _run(argv: Sequence[str], what: str, timeout: float, log: Path) -> None:
    """Run one build step with its output in `log`; a failure is one line naming the log."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    with log.open("a", encoding="utf-8") as out:
        out.write(f"$ {' '.join(argv)}\n")
        out.flush()
        try:
            result = subprocess.run(  # noqa: S603 - fixed argv, no shell
                argv, stdout=out, stderr=subprocess.STDOUT, env=env, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired:
            raise SandboxError(f"{what} took more than {timeout:.0f}s", f"see {log}") from None
    if result.returncode != 0:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
        last = next((ln.strip() for ln in reversed(lines) if ln.strip()), "no output")
        failed = products_dir() / "last-failure.log"
        shutil.copy2(log, failed)  # the wheel's scratch directory goes away; this stays
        raise SandboxError(f"{what} failed: {last[:240]}", f"see {failed}")


def _remove_unused(keep: str) -> None:
    """Remove the virtualenvs of other wheels that nobody used for `UNUSED_SECONDS`."""
    cutoff = time.time() - UNUSED_SECONDS
    for home in products_dir().iterdir():
        if not home.is_dir() or home.name == keep:
            continue
        marker = home / _COMPLETE
        last_used = marker.stat().st_mtime if marker.exists() else home.stat().st_mtime
        if last_used >= cutoff:
            continue
        lock = products_dir() / f"{home.name}.lock"
        with lock.open("a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # being installed or used right now
            # The lock file stays (empty): removing it could let two installers in at once.
            shutil.rmtree(home, ignore_errors=True)
