"""Starting and stopping the sandbox's processes, always by pid.

Each process runs in its own session (so a Ctrl-C in the terminal that ran `sandbox up`
does not kill the control plane) with its output in a log file. A `ProcessRecord` keeps the
pid together with the kernel's start time of that pid, so `down` never signals an unrelated
process that happens to reuse a pid after a reboot or a crash.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from llmservice.sandbox.errors import SandboxError

STOP_TIMEOUT_SECONDS = 10.0
_POLL_SECONDS = 0.05


def process_start_time(pid: int) -> int | None:
    """The start time of `pid` in clock ticks since boot, or None if it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name may contain spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def _reap(pid: int) -> None:
    """Collect the exit status if `pid` is our child, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


@dataclass(frozen=True)
class ProcessRecord:
    """One started process: what it is, its pid, and that pid's start time."""

    name: str
    pid: int
    start_time: int
    log: str

    def alive(self) -> bool:
        _reap(self.pid)
        return process_start_time(self.pid) == self.start_time

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProcessRecord:
        return cls(str(data["name"]), int(data["pid"]), int(data["start_time"]), str(data["log"]))


def lower_cpu_priority(pid: int, niceness: int) -> None:
    """Make the session `pid` leads yield the CPU to every other session.

    With the kernel's autogroup scheduling (on in most distributions' kernels), CPU time is
    shared between sessions first and a process's nice value only ranks it inside its own
    session; the session's rank is the nice value in /proc/PID/autogroup. The process's own
    nice value is set too, for kernels without autogroups. Children forked later inherit
    both.

    A hint, not a requirement: a process that already exited (its failure is reported by
    whoever watches it), a kernel without autogroups or a read-only /proc leave it as is."""
    with contextlib.suppress(ProcessLookupError):
        os.setpriority(os.PRIO_PROCESS, pid, niceness)
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/autogroup").write_text(str(niceness), encoding="utf-8")


def start(
    name: str,
    argv: Sequence[str],
    log: Path,
    env: Mapping[str, str] | None = None,
    niceness: int = 0,
) -> ProcessRecord:
    """Start `argv` in the background in a new session, logging to `log`, with its
    session at `niceness` (see `lower_cpu_priority`) when that is above 0.

    posix_spawn rather than subprocess.Popen: the process must outlive this Python object
    (and usually this Python process), and a Popen dropped while its child runs warns.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    sink = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    stdin = os.open(os.devnull, os.O_RDONLY)
    try:
        pid = os.posix_spawnp(
            argv[0],
            list(argv),
            dict(env) if env is not None else dict(os.environ),
            file_actions=[
                (os.POSIX_SPAWN_DUP2, stdin, 0),
                (os.POSIX_SPAWN_DUP2, sink, 1),
                (os.POSIX_SPAWN_DUP2, sink, 2),
            ],
            setsid=True,
        )
    except OSError as exc:
        raise SandboxError(
            f"{name} could not be started ({argv[0]}: {exc.strerror})",
            "run `llmservice sandbox build` to rebuild the binaries",
        ) from None
    finally:
        os.close(sink)
        os.close(stdin)
    started = process_start_time(pid)
    if started is not None and niceness > 0:
        # posix_spawn returns once the child has exec'd, in its own session already.
        lower_cpu_priority(pid, niceness)
    if started is None:
        _reap(pid)
        last = next((ln.strip() for ln in reversed(log_tail(log)) if ln.strip()), "no output")
        raise SandboxError(f"{name} failed to start: {last[:240]}", f"see {log}")
    return ProcessRecord(name=name, pid=pid, start_time=started, log=str(log))


def stop(record: ProcessRecord, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
    """SIGTERM, wait up to `timeout`, then SIGKILL; a no-op if the process is already gone."""
    stop_all([record], timeout)


def _signal_all(records: Sequence[ProcessRecord], signum: int) -> None:
    for record in records:
        with contextlib.suppress(ProcessLookupError):
            os.kill(record.pid, signum)


def _wait_all(records: Sequence[ProcessRecord], timeout: float) -> list[ProcessRecord]:
    """Wait until every process is gone or `timeout` passes; return those still alive."""
    deadline = time.monotonic() + timeout
    alive = [r for r in records if r.alive()]
    while alive and time.monotonic() < deadline:
        time.sleep(_POLL_SECONDS)
        alive = [r for r in alive if r.alive()]
    return alive


def stop_all(records: Sequence[ProcessRecord], timeout: float = STOP_TIMEOUT_SECONDS) -> None:
    """Stop many processes together: one grace period for all, not one after another.

    A router drains for several seconds on SIGTERM; stopping a hundred in turn would take
    minutes.
    """
    alive = [r for r in records if r.alive()]
    _signal_all(alive, signal.SIGTERM)
    alive = _wait_all(alive, timeout)
    _signal_all(alive, signal.SIGKILL)
    _wait_all(alive, timeout)


def log_tail(path: str | Path, lines: int = 200) -> list[str]:
    """The last lines of a log, for turning a component's failure into one line."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    return text.splitlines()[-lines:]
