"""The runtime's level-based loop: desired processes from Pods, actual from records.

Every `interval` seconds it lists the project's Pods and compares: a Running Pod with an IP
and no deletion timestamp should have a live process; anything else recorded should not.
Being level-based, a missed event only delays a start or a stop by one interval, and a
process that died is started again (with a back-off) as a kubelet would restart it.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import client

from llmservice.sandbox.processes import start, stop
from llmservice.sandbox.runtime import records
from llmservice.sandbox.runtime.materialize import PodMaterializer
from llmservice.sandbox.runtime.workloads import (
    POD_SELECTOR,
    WORKLOADS,
    PodLaunch,
    component_of,
)

RESTART_BACKOFF_SECONDS = 2.0
MAX_BACKOFF_SECONDS = 60.0
log = logging.getLogger("llmservice.sandbox.runtime")


def wants_process(pod: Any) -> bool:
    """Running on a node, with an IP, not being deleted, and one of our components."""
    return (
        pod.metadata.deletion_timestamp is None
        and pod.status is not None
        and pod.status.phase == "Running"
        and bool(pod.status.pod_ip)
        and component_of(pod.metadata.labels) is not None
    )


class Supervisor:
    """Starts and stops one process per qualifying Pod."""

    def __init__(
        self,
        core: client.CoreV1Api,
        materializer: PodMaterializer,
        directory: Path,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.core = core
        self.materializer = materializer
        self.directory = directory
        self.clock = clock
        self.last_start: dict[str, float] = {}
        self.starts: dict[str, int] = {}

    def reconcile(self) -> None:
        pods: list[Any] = self.core.list_pod_for_all_namespaces(label_selector=POD_SELECTOR).items
        desired = {p.metadata.uid: p for p in pods if wants_process(p)}
        actual = records.load_all(self.directory)
        for uid, running in actual.items():
            if uid not in desired:
                log.info(
                    "Stopping %s process of Pod %s/%s (pid %d)",
                    running.component, running.namespace, running.name, running.process.pid,
                )  # fmt: skip
                stop(running.process)
                records.remove(self.directory, uid)
                # The Pod's token, Secret copies and log go with it.
                shutil.rmtree(self.materializer.root / uid, ignore_errors=True)
                self.last_start.pop(uid, None)
                self.starts.pop(uid, None)
        for uid, pod in desired.items():
            current = actual.get(uid)
            if current is not None and current.process.alive():
                continue
            if uid in self.last_start and self.clock() - self.last_start[uid] < self.backoff(uid):
                continue
            if current is not None:
                log.warning(
                    "Process of Pod %s/%s exited; restarting (see %s)",
                    current.namespace, current.name, current.process.log,
                )  # fmt: skip
            self.last_start[uid] = self.clock()
            self.starts[uid] = self.starts.get(uid, 0) + 1
            try:
                self.launch(pod)
            except client.ApiException as exc:
                log.warning(
                    "Cannot start Pod %s/%s yet: %s %s",
                    pod.metadata.namespace, pod.metadata.name, exc.status, exc.reason,
                )  # fmt: skip

    def backoff(self, uid: str) -> float:
        """Doubling delay between restarts of a crashing process, as a kubelet does."""
        doublings = max(0, self.starts.get(uid, 1) - 1)
        return min(MAX_BACKOFF_SECONDS, RESTART_BACKOFF_SECONDS * float(2**doublings))

    def launch(self, pod: Any) -> None:
        component = component_of(pod.metadata.labels)
        assert component is not None  # noqa: S101 - filtered by wants_process
        workload = WORKLOADS[component]
        ready = self.materializer.materialize(pod, workload.default_port)
        launch = PodLaunch(
            namespace=pod.metadata.namespace,
            name=pod.metadata.name,
            component=component,
            ip=pod.status.pod_ip,
            port=ready.port,
            args=ready.args,
        )
        argv = workload.command(launch)
        directory = self.materializer.root / pod.metadata.uid
        process = start(
            f"{component}:{pod.metadata.name}", argv, directory / "process.log", ready.env
        )
        records.save(
            self.directory,
            records.PodProcess(
                uid=pod.metadata.uid,
                namespace=launch.namespace,
                name=launch.name,
                component=component,
                ip=launch.ip,
                port=launch.port,
                process=process,
            ),
        )
        log.info(
            "Started %s process of Pod %s/%s on %s:%d (pid %d)",
            component, launch.namespace, launch.name, launch.ip, launch.port, process.pid,
        )  # fmt: skip

    def stop_all(self) -> None:
        records.stop_all_pod_processes(self.directory)
