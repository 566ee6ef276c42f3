"""`python -m llmservice.sandbox.runtime --dir SANDBOX_DIR --python PYTHON`: the runtime.

`sandbox up` starts it after the control plane; it runs until SIGTERM, then stops every
process it started before exiting. PYTHON is the interpreter of the installed product
(see `sandbox.product`): the Pods' processes run llmservice from there.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time
from functools import partial
from pathlib import Path
from types import FrameType

import httpx
from kubernetes import client

from llmservice.sandbox.apiclient import api_client
from llmservice.sandbox.layout import SandboxDir
from llmservice.sandbox.pki import Pki
from llmservice.sandbox.product import Product
from llmservice.sandbox.runtime.materialize import PodMaterializer
from llmservice.sandbox.runtime.probes import Prober, http_ok
from llmservice.sandbox.runtime.supervisor import Supervisor
from llmservice.sandbox.runtime.workloads import workloads
from llmservice.sandbox.state import SandboxState

INTERVAL_SECONDS = 0.5
log = logging.getLogger("llmservice.sandbox.runtime")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="llmservice-sandbox-runtime")
    parser.add_argument("--dir", type=Path, required=True, help="the sandbox directory")
    parser.add_argument(
        "--python",
        type=Path,
        required=True,
        help="interpreter with llmservice installed from its wheel; the Pods run it",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    where = SandboxDir(args.dir)
    state = SandboxState.load(where.state)
    if state is None:
        log.error("no sandbox state in %s", where.root)
        return 1
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with api_client(where.kubeconfig) as api, httpx.Client() as http:
        core = client.CoreV1Api(api)
        materializer = PodMaterializer(
            core, state.ports.apiserver_url, Pki(where.pki).ca_cert, where.runtime
        )
        prober = Prober(clock=time.monotonic, check=partial(http_ok, http))
        table = workloads(state.settings.engine)
        supervisor = Supervisor(
            core, materializer, where.runtime, prober, Product(args.python), workloads=table
        )
        engine = "the real vLLM" if state.settings.engine == "vllm" else "the vLLM simulator"
        log.info("Local runtime watching Pods of the llmservice operator; engines run %s", engine)
        try:
            while not stopping.is_set():
                try:
                    supervisor.reconcile()
                except Exception:
                    log.exception("reconcile failed; retrying")
                stopping.wait(INTERVAL_SECONDS)
        finally:
            supervisor.stop_all()
            log.info("Local runtime stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
