"""The runtime's level-based loop: desired processes from Pods, actual from records.

Every `interval` seconds it lists the project's Pods and compares: a Pod with an IP, on a
node, not being deleted, should have a live process; anything else recorded should not.
Being level-based, a missed event only delays a start or a stop by one interval, and a
process that died is started again (with a back-off) as a kubelet would restart it.

It also plays the kubelet's part in the Pod's status (see `stages` for why kwok does not):
ContainerCreating while a volume's Secret is missing (with a FailedMount Event),
CreateContainerConfigError while an env reference is, Running once the process is started,
Ready once the readiness probe passes, CrashLoopBackOff while a crashed process waits for
its restart. While a process runs, its Secret and ConfigMap volumes follow their sources
every `VOLUME_REFRESH_SECONDS` (atomically, in the kubelet's layout).

The processes run llmservice from the installed product it is given, as the image would.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from kubernetes import client

from llmservice.sandbox.errors import SandboxError
from llmservice.sandbox.processes import log_tail, start, stop_all
from llmservice.sandbox.product import Product
from llmservice.sandbox.runtime import podstatus, records
from llmservice.sandbox.runtime.kubelet import KubeletReporter, now_rfc3339
from llmservice.sandbox.runtime.materialize import MissingReference, PodMaterializer
from llmservice.sandbox.runtime.probes import HttpProbe, Prober
from llmservice.sandbox.runtime.workloads import (
    POD_SELECTOR,
    WORKLOADS,
    PodLaunch,
    Workload,
    component_of,
)

RESTART_BACKOFF_SECONDS = 2.0
# How often a running Pod's Secret and ConfigMap volumes are compared with their sources:
# a kubelet takes up to a minute or so; seconds keep tests of file rotation short.
VOLUME_REFRESH_SECONDS = 2.0
MAX_BACKOFF_SECONDS = 60.0
log = logging.getLogger("llmservice.sandbox.runtime")


def wants_process(pod: Any) -> bool:
    """On a node with an IP, not being deleted, and one of our components."""
    return (
        pod.metadata.deletion_timestamp is None
        and pod.status is not None
        and pod.status.phase in ("Pending", "Running")
        and bool(pod.status.pod_ip)
        and component_of(pod.metadata.labels) is not None
    )


class Supervisor:
    """Starts and stops one process per qualifying Pod, and reports on it as a kubelet."""

    def __init__(
        self,
        core: client.CoreV1Api,
        materializer: PodMaterializer,
        directory: Path,
        prober: Prober,
        product: Product,
        clock: Callable[[], float] = time.monotonic,
        workloads: Mapping[str, Workload] = WORKLOADS,
    ) -> None:
        self.core = core
        self.workloads = workloads
        self.materializer = materializer
        self.directory = directory
        self.prober = prober
        self.product = product
        self.kubelet = KubeletReporter(core)
        self.clock = clock
        self.last_start: dict[str, float] = {}
        self.starts: dict[str, int] = {}
        self.started_at: dict[str, str] = {}
        self.refreshed_at: dict[str, float] = {}

    def reconcile(self) -> None:
        pods: list[Any] = self.core.list_pod_for_all_namespaces(label_selector=POD_SELECTOR).items
        desired = {p.metadata.uid: p for p in pods if wants_process(p)}
        actual = records.load_all(self.directory)
        unwanted = {uid: running for uid, running in actual.items() if uid not in desired}
        for running in unwanted.values():
            log.info(
                "Stopping %s process of Pod %s/%s (pid %d)",
                running.component, running.namespace, running.name, running.process.pid,
            )  # fmt: skip
        # Together: each may take its drain grace to exit.
        stop_all([running.process for running in unwanted.values()])
        for uid in unwanted:
            records.remove(self.directory, uid)
            # The Pod's token, Secret copies and log go with it.
            shutil.rmtree(self.materializer.root / uid, ignore_errors=True)
        for uid in set(self.last_start) - set(desired):
            self.forget(uid)
        for uid, pod in desired.items():
            try:
                self.sync(pod, actual.get(uid))
            except Exception:
                # One Pod's failure must not keep every other Pod waiting; retried next pass.
                log.exception("Pod %s/%s: sync failed", pod.metadata.namespace, pod.metadata.name)

    def forget(self, uid: str) -> None:
        self.last_start.pop(uid, None)
        self.starts.pop(uid, None)
        self.started_at.pop(uid, None)
        self.refreshed_at.pop(uid, None)
        self.prober.forget(uid)
        self.kubelet.forget(uid)

    def restarts(self, uid: str) -> int:
        return max(0, self.starts.get(uid, 0) - 1)

    def sync(self, pod: Any, current: records.PodProcess | None) -> None:
        """Start, keep or restart the Pod's process, and report its state."""
        uid = pod.metadata.uid
        if current is not None and current.process.alive():
            probe = HttpProbe.readiness(pod.spec.containers[0], current.port)
            ready = self.prober.ready(uid, probe, current.ip)
            started_at = self.started_at.setdefault(uid, now_rfc3339())
            self.kubelet.status(pod, podstatus.running(started_at, ready, self.restarts(uid)))
            self.refresh_volumes(pod)
            return
        if current is not None:
            self.prober.forget(uid)
            last = next((ln for ln in reversed(log_tail(current.process.log)) if ln.strip()), "")
            message = f"back-off restarting failed container; last output: {last.strip()[:200]}"
            self.kubelet.status(pod, podstatus.crash_loop(message, self.restarts(uid) + 1))
        if uid in self.last_start and self.clock() - self.last_start[uid] < self.backoff(uid):
            return
        if current is not None:
            log.warning(
                "Process of Pod %s/%s exited; restarting (see %s)",
                current.namespace, current.name, current.process.log,
            )  # fmt: skip
        self.last_start[uid] = self.clock()
        self.starts[uid] = self.starts.get(uid, 0) + 1
        try:
            self.launch(pod)
        except MissingReference as missing:
            # The kubelet retries until the reference appears; so does this, with back-off.
            if missing.mounting:
                self.kubelet.warning(pod, "FailedMount", missing.message)
                self.kubelet.status(pod, podstatus.creating())
            else:
                self.kubelet.warning(pod, "Failed", f"Error: {missing.message}")
                self.kubelet.status(pod, podstatus.config_error(missing.message))
            self.starts[uid] -= 1  # nothing ran, so nothing restarted
        except client.ApiException as exc:
            log.warning(
                "Cannot start Pod %s/%s yet: %s %s",
                pod.metadata.namespace, pod.metadata.name, exc.status, exc.reason,
            )  # fmt: skip
        except SandboxError as failed:
            # Exited at once (a bad flag, say): a crash like any other, restarted with back-off.
            log.warning("Pod %s/%s: %s", pod.metadata.namespace, pod.metadata.name, failed)
            self.kubelet.status(pod, podstatus.crash_loop(str(failed), self.restarts(uid) + 1))
        else:
            self.started_at[uid] = now_rfc3339()
            self.kubelet.status(
                pod, podstatus.running(self.started_at[uid], False, self.restarts(uid))
            )

    def refresh_volumes(self, pod: Any) -> None:
        """Update a running Pod's Secret and ConfigMap volumes when due, as a kubelet does."""
        uid = pod.metadata.uid
        now = self.clock()
        if now - self.refreshed_at.setdefault(uid, now) < VOLUME_REFRESH_SECONDS:
            return
        self.refreshed_at[uid] = now
        where = (pod.metadata.namespace, pod.metadata.name)
        try:
            changed = self.materializer.refresh_volumes(pod)
        except MissingReference as missing:
            # The files stay as they were; a kubelet reports this as an Event too.
            self.kubelet.warning(pod, "FailedMount", missing.message)
            return
        for volume in changed:
            log.info("Pod %s/%s: updated volume %s", *where, volume)

    def backoff(self, uid: str) -> float:
        """Doubling delay between restarts of a crashing process, as a kubelet does."""
        doublings = max(0, self.starts.get(uid, 1) - 1)
        return min(MAX_BACKOFF_SECONDS, RESTART_BACKOFF_SECONDS * float(2**doublings))

    def launch(self, pod: Any) -> None:
        component = component_of(pod.metadata.labels)
        assert component is not None  # noqa: S101 - filtered by wants_process
        workload = self.workloads[component]
        ready = self.materializer.materialize(pod, workload.default_port)
        launch = PodLaunch(
            namespace=pod.metadata.namespace,
            name=pod.metadata.name,
            component=component,
            ip=pod.status.pod_ip,
            port=ready.port,
            args=ready.args,
            product=self.product,
        )
        argv = workload.command(launch)
        directory = self.materializer.root / pod.metadata.uid
        env = ready.env | dict(workload.env)
        name = f"{component}:{pod.metadata.name}"
        process = start(name, argv, directory / "process.log", env, workload.niceness)
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
