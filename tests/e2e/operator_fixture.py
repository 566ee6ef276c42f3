"""The operator under test: `llmservice operator` as its own process beside the sandbox.

It is the installed product (the wheel in a virtualenv without extras), as the image runs.

It runs with the sandbox's kubeconfig, installs nothing itself, and is stopped at the end.
Its log is kept in the sandbox directory. Tests may kill it and start it again.
"""

from __future__ import annotations

import os
import socket
import subprocess
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from llmservice.sandbox.cluster import Sandbox
from llmservice.sandbox.product import Product
from tests.e2e.waiting import eventually


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class OperatorProcess:
    """One operator process at a time, started and stopped on demand."""

    def __init__(
        self, kubeconfig: Path, log_path: Path, product: Product, args: Sequence[str] = ()
    ) -> None:
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.product = product
        self.args = list(args)
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self) -> None:
        self.port = free_port()
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        env.pop("KUBERNETES_SERVICE_HOST", None)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.product.command(
                    "operator", "--liveness-host", "127.0.0.1", "--liveness-port", str(self.port),
                    *self.args,
                ),
                env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        eventually(self._alive, timeout=60, what="the operator's liveness endpoint")

    def _alive(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(
                f"operator exited with {self.process.returncode}; see {self.log_path}"
            )
        url = f"http://127.0.0.1:{self.port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: no chance to finish what it was doing."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()


@contextmanager
def running_operator(
    sandbox: Sandbox, product: Product, log_name: str, args: Sequence[str] = ()
) -> Iterator[OperatorProcess]:
    """An operator started for a test module, logging to `log_name` in the sandbox directory;
    `args` are added to its command line."""
    process = OperatorProcess(sandbox.kubeconfig, sandbox.dir.root / log_name, product, args)
    process.start()
    try:
        yield process
    finally:
        process.stop()
