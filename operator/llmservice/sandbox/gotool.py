"""Running the Go toolchain with progress, a log file, and one-line errors.

`go build -v` names each package as it compiles it; counting those lines is the progress a
newcomer sees during a build of twenty minutes. The full output goes to a log file whose
path every error names.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from llmservice.sandbox.errors import SandboxError
from llmservice.sandbox.progress import Progress

MINIMUM_GO = (1, 26)
HEARTBEAT_SECONDS = 15.0
_PROXY_FAILURES = (
    "dial tcp",
    "no such host",
    "connection refused",
    "i/o timeout",
    "TLS handshake timeout",
    "proxyconnect",
    "network is unreachable",
)


def go_environment() -> dict[str, str]:
    """The environment for every go command: the local toolchain only, no VCS stamping."""
    env = dict(os.environ)
    env["GOTOOLCHAIN"] = "local"
    env["GOFLAGS"] = "-buildvcs=false"
    env.setdefault("GOPROXY", "https://proxy.golang.org,direct")
    return env


def find_go() -> str:
    """The `go` executable, checked to be recent enough, or a SandboxError saying so."""
    go = shutil.which("go") or next(
        (p for p in ("/usr/local/go/bin/go",) if Path(p).is_file()), None
    )
    if go is None:
        raise SandboxError(
            "Go toolchain not found",
            f"install Go {MINIMUM_GO[0]}.{MINIMUM_GO[1]} or newer and put `go` on PATH",
        )
    out = subprocess.run(  # noqa: S603
        [go, "env", "GOVERSION"], capture_output=True, text=True, check=False, env=go_environment()
    ).stdout.strip()
    match = re.match(r"go(\d+)\.(\d+)", out)
    if match is None or (int(match[1]), int(match[2])) < MINIMUM_GO:
        raise SandboxError(
            f"Go {out or 'of unknown version'} is too old to build the sandbox",
            f"install Go {MINIMUM_GO[0]}.{MINIMUM_GO[1]} or newer",
        )
    return go


def explain_failure(output: str, log: Path, what: str) -> SandboxError:
    """Turn go's output into one line: an unreachable proxy, or the last error line."""
    env = go_environment()
    if any(marker in output for marker in _PROXY_FAILURES):
        return SandboxError(
            f"the Go module proxy is unreachable while {what} (GOPROXY={env['GOPROXY']})",
            f"check the network or set GOPROXY to a reachable proxy; details in {log}",
        )
    lines = [line for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower() or line.startswith("go: ")]
    last = (errors or lines or ["no output"])[-1].strip()
    return SandboxError(f"{what} failed: {last}", f"see {log}")


def _pump(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    """Forward a pipe's lines to a queue, then None at end of stream."""
    for line in stream:
        lines.put(line)
    lines.put(None)


def run_go(
    go: str,
    args: Sequence[str],
    *,
    cwd: Path,
    log: Path,
    progress: Progress,
    what: str,
    env: dict[str, str] | None = None,
) -> str:
    """Run one go command, logging everything and printing a heartbeat while it runs.

    The heartbeat is on a timer, not on output: linking kube-apiserver prints nothing for a
    minute, and that minute must not look like a hang.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    output: list[str] = []
    compiled = 0
    started = last_beat = time.monotonic()
    with log.open("a", encoding="utf-8") as sink:
        sink.write(f"$ go {' '.join(args)}\n")
        proc = subprocess.Popen(  # noqa: S603
            [go, *args],
            cwd=cwd,
            env=env or go_environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert proc.stdout is not None  # noqa: S101 - set by PIPE above
        lines: queue.Queue[str | None] = queue.Queue()
        reader = threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True)
        reader.start()
        while True:
            try:
                line = lines.get(timeout=1.0)
            except queue.Empty:
                line = ""
            if line is None:
                break
            if line:
                sink.write(line)
                output.append(line)
                if not line.startswith(("go: ", "#")) and " " not in line.strip():
                    compiled += 1
            if time.monotonic() - last_beat >= HEARTBEAT_SECONDS:
                last_beat = time.monotonic()
                elapsed = last_beat - started
                detail = f"{compiled} packages compiled" if compiled else "working"
                progress.say(f"  still {what} ({elapsed:.0f}s): {detail}")
        code = proc.wait()
        reader.join()
    text = "".join(output)
    if code != 0:
        raise explain_failure(text, log, what)
    return text
