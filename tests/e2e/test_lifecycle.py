"""`up` is idempotent, `down` leaves nothing behind, a failed start cleans up after itself.

These tests start their own small sandboxes (one node, another Pod range) next to the
session's, in their own directories.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from llmservice.sandbox import components, processes
from llmservice.sandbox.apiclient import api_client
from llmservice.sandbox.cluster import Sandbox
from llmservice.sandbox.errors import SandboxError
from llmservice.sandbox.layout import Settings
from llmservice.sandbox.ports import is_listening
from llmservice.sandbox.processes import ProcessRecord
from llmservice.sandbox.progress import Progress
from llmservice.sandbox.runtime.workloads import COMPONENT_LABEL, MANAGED_BY, MANAGED_BY_LABEL
from llmservice.sandbox.versions import default_layout
from tests.e2e.addresses import fresh_pod_cidr
from tests.e2e.manifests import deployment
from tests.e2e.probes import PORT, answers, refused
from tests.e2e.waiting import eventually

pytestmark = pytest.mark.e2e


def small_sandbox(directory: Path, apiserver_port: int = 0, runtime: bool = False) -> Sandbox:
    settings = Settings(
        nodes=1, pod_cidr=fresh_pod_cidr(), runtime=runtime, apiserver_port=apiserver_port
    )
    return Sandbox(directory, settings, default_layout(), Progress(quiet=True))


def start_engine_pod(sandbox: Sandbox) -> str:
    """An engine Pod with its runtime process answering; returns the process's URL."""
    with api_client(sandbox.kubeconfig) as api:
        labels = {MANAGED_BY_LABEL: MANAGED_BY, COMPONENT_LABEL: "engine"}
        body = deployment("engine", labels=labels, port=PORT)
        client.AppsV1Api(api).create_namespaced_deployment("default", body)
        core = client.CoreV1Api(api)

        def pod_ip() -> str | None:
            pods: list[Any] = core.list_namespaced_pod("default", label_selector="app=engine").items
            return next((p.status.pod_ip for p in pods if p.status.pod_ip), None)

        url = f"http://{eventually(pod_ip, timeout=60, what='a Pod IP')}:{PORT}/health"
    eventually(lambda: answers(url), timeout=30, what=f"{url} to answer")
    return url


def test_up_twice_is_idempotent_and_down_leaves_nothing(tmp_path: Path) -> None:
    sandbox = small_sandbox(tmp_path / "sandbox", runtime=True)
    try:
        first = sandbox.up()
        second = sandbox.up()
        assert [p.pid for p in second.processes] == [p.pid for p in first.processes]
        assert sandbox.healthy()
        pod_url = start_engine_pod(sandbox)
    finally:
        sandbox.down()
    assert not any(p.alive() for p in first.processes)
    assert refused(pod_url)
    ports = first.ports
    for port in (ports.apiserver, ports.etcd_client, ports.controller_manager, ports.scheduler):
        assert not is_listening(port), port
    assert not (tmp_path / "sandbox").exists()


def test_failed_start_stops_what_it_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[ProcessRecord] = []
    real_start = processes.start

    def recording_start(
        name: str, argv: Sequence[str], *args: object, **kwargs: object
    ) -> ProcessRecord:
        record = real_start(name, argv, *args, **kwargs)  # type: ignore[arg-type]
        started.append(record)
        return record

    def broken_apiserver(*args: object, **kwargs: object) -> list[str]:
        return [str(default_layout().binary("kube-apiserver")), "--no-such-flag"]

    monkeypatch.setattr("llmservice.sandbox.cluster.start", recording_start)
    monkeypatch.setattr(components, "apiserver", broken_apiserver)
    sandbox = small_sandbox(tmp_path / "sandbox")
    with pytest.raises(SandboxError, match="kube-apiserver failed to start"):
        sandbox.up()
    # kube-apiserver may exit before its start is even recorded; etcd was running.
    assert [p.name for p in started][:1] == ["etcd"]
    assert not any(p.alive() for p in started)
    assert not (tmp_path / "sandbox").exists()


def test_port_in_use_is_one_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        sandbox = small_sandbox(tmp_path / "sandbox", apiserver_port=port)
        with pytest.raises(SandboxError, match=f"port {port} .* already in use"):
            sandbox.up()
    assert not (tmp_path / "sandbox").exists()
