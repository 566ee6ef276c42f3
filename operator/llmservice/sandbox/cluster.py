"""Bringing a sandbox up and down: the order of things, and cleanup on every failure.

`up` is idempotent: a healthy sandbox is left as it is; a half-dead one is torn down and
started afresh. Each process is recorded in the state file the moment it starts, so a
failure at any step (or an interrupted `up`) tears down exactly what was started, by pid.

The local runtime starts the Pods' processes from the installed product (see `product`):
llmservice's wheel in a virtualenv without extras, as the image runs it.
"""

from __future__ import annotations

import os
import shutil
import ssl
import sys
from functools import partial
from pathlib import Path

from kubernetes import client

from llmservice.sandbox import components, health, nodes, pki
from llmservice.sandbox.apiclient import api_client, found
from llmservice.sandbox.build import Builder
from llmservice.sandbox.components import Ports
from llmservice.sandbox.errors import SandboxError
from llmservice.sandbox.kubeconfig import write_admin
from llmservice.sandbox.layout import SandboxDir, Settings
from llmservice.sandbox.ports import free_port, require_free
from llmservice.sandbox.processes import ProcessRecord, start, stop
from llmservice.sandbox.product import Product, ensure_product
from llmservice.sandbox.progress import Progress
from llmservice.sandbox.runtime.records import stop_all_pod_processes
from llmservice.sandbox.state import SandboxState
from llmservice.sandbox.versions import BinaryLayout, default_layout, default_vllm_layout
from llmservice.sandbox.vllm_install import VllmInstaller

ETCD_TIMEOUT = 30.0
APISERVER_TIMEOUT = 90.0
COMPONENT_TIMEOUT = 60.0
NODES_TIMEOUT = 90.0
RUNTIME_MODULE = "llmservice.sandbox.runtime"


class Sandbox:
    """One sandbox: its directory, its settings and the cached binaries it runs."""

    def __init__(
        self,
        directory: Path,
        settings: Settings | None = None,
        binaries: BinaryLayout | None = None,
        progress: Progress | None = None,
        product: Product | None = None,
    ) -> None:
        self.dir = SandboxDir(directory)
        self.settings = settings or Settings()
        self.binaries = binaries or default_layout()
        self.progress = progress or Progress()
        # What the runtime runs for the Pods; made at `up` from the checkout when not given.
        self.product = product

    @property
    def kubeconfig(self) -> Path:
        return self.dir.kubeconfig

    def load(self) -> SandboxState | None:
        return SandboxState.load(self.dir.state)

    def healthy(self, state: SandboxState | None = None) -> bool:
        """Every recorded process alive and the API server ready."""
        state = state or self.load()
        if state is None or not state.processes:
            return False
        if not all(p.alive() for p in state.processes):
            return False
        try:
            tls = self._admin_tls()
        except (OSError, ssl.SSLError):
            return False
        return health.http_ok(f"{state.ports.apiserver_url}/readyz", tls)

    def up(self) -> SandboxState:
        """Build what is missing, then start everything, or reuse a healthy sandbox."""
        Builder(self.binaries, self.progress).ensure()
        existing = self.load()
        if existing is not None:
            if self.healthy(existing):
                self.progress.say(f"sandbox already up at {existing.ports.apiserver_url}")
                return existing
            self.progress.say("found a sandbox that is not healthy: tearing it down first")
            self.down()
        elif self.dir.owned():
            shutil.rmtree(self.dir.root)
        elif self.dir.root.exists() and any(self.dir.root.iterdir()):
            raise SandboxError(
                f"{self.dir.root} exists and is not a sandbox directory",
                "choose another --dir (or LLMSERVICE_SANDBOX_DIR), or remove it",
            )
        if self.settings.runtime and self.product is None:
            self.product = ensure_product(self.progress)
        if self.settings.runtime and self.settings.engine == "vllm":
            VllmInstaller(default_vllm_layout(), self.progress).ensure()
        state = SandboxState(
            settings=self.settings,
            ports=self._choose_ports(),
            kubernetes_version=self.binaries.kubernetes_version,
        )
        try:
            self._start(state)
        except SandboxError as exc:
            self.progress.say("start failed: stopping what was started")
            kept = self._keep_logs()
            self.down()
            raise SandboxError(str(exc).replace(str(self.dir.logs), str(kept))) from None
        except BaseException:
            self.progress.say("start failed: stopping what was started")
            self.down()
            raise
        return state

    def _keep_logs(self) -> Path:
        """Move the logs beside the sandbox directory, so the error can point at them."""
        kept = self.dir.root.with_name(f"{self.dir.root.name}-failed-logs")
        shutil.rmtree(kept, ignore_errors=True)
        if self.dir.logs.exists():
            shutil.copytree(self.dir.logs, kept)
        return kept

    def _choose_ports(self) -> Ports:
        wanted = self.settings.apiserver_port
        apiserver = require_free(wanted, "the API server") if wanted else free_port()
        return Ports(
            etcd_client=free_port(),
            etcd_peer=free_port(),
            apiserver=apiserver,
            controller_manager=free_port(),
            scheduler=free_port(),
        )

    def _launch(self, state: SandboxState, name: str, argv: list[str]) -> ProcessRecord:
        env = dict(os.environ)
        env["KWOK_WORKDIR"] = str(self.dir.kwok_workdir)
        env.pop("KUBECONFIG", None)
        record = start(name, argv, self.dir.log(name), env=env)
        state.record(record, self.dir.state)
        return record

    def _admin_tls(self) -> ssl.SSLContext:
        keys = pki.Pki(self.dir.pki)
        return health.client_context(keys.ca_cert, keys.admin_cert, keys.admin_key)

    def _start(self, state: SandboxState) -> None:
        where, ports, settings, bins = self.dir, state.ports, self.settings, self.binaries
        say = self.progress.step
        where.root.mkdir(parents=True, exist_ok=True)
        where.marker.write_text("created by `llmservice sandbox up`\n", encoding="utf-8")
        state.save(where.state)
        with say("generating certificates"):
            keys = pki.generate(where.pki, settings.first_service_ip)
        with say("starting etcd"):
            proc = self._launch(state, "etcd", components.etcd(bins, where, ports))
            health.wait_until(
                lambda: health.http_ok(f"{ports.etcd_url}/health"),
                timeout=ETCD_TIMEOUT,
                what="etcd to be healthy",
                watch=proc,
            )
        with say(f"starting kube-apiserver {bins.kubernetes_version}"):
            proc = self._launch(
                state, "kube-apiserver", components.apiserver(bins, where, keys, ports, settings)
            )
            tls = self._admin_tls()
            health.wait_until(
                lambda: health.http_ok(f"{ports.apiserver_url}/readyz", tls),
                timeout=APISERVER_TIMEOUT,
                what="kube-apiserver /readyz",
                watch=proc,
            )
        write_admin(
            where.kubeconfig, ports.apiserver_url, keys.ca_cert, keys.admin_cert, keys.admin_key
        )
        insecure = health.self_signed_context()
        with say("starting kube-controller-manager and kube-scheduler"):
            kcm = self._launch(
                state,
                "kube-controller-manager",
                components.controller_manager(bins, where, keys, ports, settings),
            )
            sched = self._launch(state, "kube-scheduler", components.scheduler(bins, where, ports))
            for proc, port in ((kcm, ports.controller_manager), (sched, ports.scheduler)):
                url = f"https://127.0.0.1:{port}/healthz"
                health.wait_until(
                    partial(health.http_ok, url, insecure),
                    timeout=COMPONENT_TIMEOUT,
                    what=f"{proc.name} /healthz",
                    watch=proc,
                )
        with say(f"starting kwok with {settings.nodes} GPU nodes"):
            proc = self._launch(state, "kwok", components.kwok(bins, where, settings))
            with api_client(where.kubeconfig) as api:
                core = client.CoreV1Api(api)
                nodes.ensure_nodes(core, settings)
                health.wait_until(
                    lambda: nodes.all_ready(core, settings),
                    timeout=NODES_TIMEOUT,
                    what="the nodes to be Ready and untainted",
                    watch=proc,
                )
                health.wait_until(
                    partial(
                        found, partial(core.read_namespaced_service_account, "default", "default")
                    ),
                    timeout=COMPONENT_TIMEOUT,
                    what="the default ServiceAccount",
                    watch=kcm,
                )
        if settings.runtime:
            assert self.product is not None  # noqa: S101 - made in `up`
            with say("starting the local runtime"):
                argv = [sys.executable, "-m", RUNTIME_MODULE, "--dir", str(where.root)]
                argv += ["--python", str(self.product.python)]
                self._launch(state, "local-runtime", argv)

    def down(self) -> bool:
        """Stop every recorded process by pid (newest first) and remove the directory.

        Returns whether there was anything to stop or remove.
        """
        if not self.dir.owned():
            return False
        state = self.load()
        if state is not None:
            for record in reversed(state.processes):
                stop(record)
        stop_all_pod_processes(self.dir.runtime)
        shutil.rmtree(self.dir.root, ignore_errors=True)
        return True
