"""Stopping the sandbox's processes, with real child processes."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from pathlib import Path

from llmservice.sandbox.processes import lower_cpu_priority, start, stop_all

# Ignores SIGTERM, as a process stuck in its drain would: only SIGKILL ends it.
STUBBORN = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
POLITE = "import time; time.sleep(60)"


def test_stop_all_ends_polite_and_stubborn_processes(tmp_path: Path) -> None:
    started = [
        start(f"p{i}", [sys.executable, "-c", code], tmp_path / f"p{i}.log")
        for i, code in enumerate([POLITE, STUBBORN, POLITE, STUBBORN])
    ]
    assert all(p.alive() for p in started)
    stop_all(started, timeout=1.0)
    assert not any(p.alive() for p in started)


def test_stop_all_of_nothing_or_of_the_dead_is_fine(tmp_path: Path) -> None:
    stop_all([])
    done = start("done", [sys.executable, "-c", "import time; time.sleep(0.2)"], tmp_path / "d")
    deadline = time.monotonic() + 30
    while done.alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not done.alive()
    stop_all([done], timeout=1.0)  # gone already: nothing to signal, nothing raised


# Forks a child after it starts, as vLLM forks its engine core, and prints the child's pid.
FORKS = (
    "import os, sys, time\n"
    "child = os.fork()\n"
    "if child == 0:\n    time.sleep(60)\n"
    "print(child, flush=True)\ntime.sleep(60)"
)


def niceness_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    return int(stat[stat.rindex(")") + 2 :].split()[16])


def test_a_process_started_nice_yields_with_its_session_and_its_children(tmp_path: Path) -> None:
    log = tmp_path / "nice.log"
    process = start("nice", [sys.executable, "-c", FORKS], log, niceness=19)
    plain = start("plain", [sys.executable, "-c", POLITE], tmp_path / "plain.log")
    try:
        deadline = time.monotonic() + 30
        while not log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        child = int(log.read_text())
        assert [niceness_of(process.pid), niceness_of(child)] == [19, 19]
        assert niceness_of(plain.pid) == 0
        autogroup = Path(f"/proc/{process.pid}/autogroup")
        if autogroup.exists():  # kernels built without autogroups have no such file
            assert autogroup.read_text().split()[-1] == "19"
            assert Path(f"/proc/{child}/autogroup").read_text() == autogroup.read_text()
            assert Path(f"/proc/{plain.pid}/autogroup").read_text().split()[-1] == "0"
    finally:
        stop_all([process, plain], timeout=1.0)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # the forked child, in the same session


def test_lowering_the_priority_of_a_process_that_exited_is_no_error(tmp_path: Path) -> None:
    done = start("done", [sys.executable, "-c", "pass"], tmp_path / "done.log")
    deadline = time.monotonic() + 30
    while done.alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not done.alive()
    lower_cpu_priority(done.pid, 19)  # a launch that raced its process's exit goes on
