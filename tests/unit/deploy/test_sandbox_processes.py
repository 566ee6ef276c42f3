"""Stopping the sandbox's processes, with real child processes."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from llmservice.sandbox.processes import start, stop_all

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
