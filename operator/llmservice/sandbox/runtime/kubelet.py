"""What the runtime writes back to the API as the kubelet of its Pods: status and Events.

Both are written only on a change: the status when the Pod's `ContainerView` differs from
the one last written, an Event once per Pod and distinct message (a kubelet would bump the
count of a repeated one; nothing here reads counts).
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from kubernetes import client

from llmservice.sandbox.runtime.podstatus import ContainerView, status_patch

log = logging.getLogger("llmservice.sandbox.runtime")
COMPONENT = "kubelet"


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class KubeletReporter:
    """Writes Pod status and Warning Events with the runtime's admin credentials."""

    def __init__(self, core: client.CoreV1Api) -> None:
        self.core = core
        self.written: dict[str, ContainerView] = {}
        self.events: set[tuple[str, str, str]] = set()

    def status(self, pod: Any, view: ContainerView) -> None:
        uid = pod.metadata.uid
        if self.written.get(uid) == view:
            return
        as_dict = self.core.api_client.sanitize_for_serialization(pod)
        body = status_patch(as_dict, view, now_rfc3339())
        try:
            self.core.patch_namespaced_pod_status(
                pod.metadata.name,
                pod.metadata.namespace,
                body,
                _content_type="application/strategic-merge-patch+json",
            )
        except client.ApiException as exc:
            # One Pod's refusal must not stall the loop for every other Pod; a Pod deleted
            # meanwhile needs no status, and anything else is tried again next pass.
            if exc.status != 404:
                log.warning(
                    "Cannot write the status of Pod %s/%s: %s %s",
                    pod.metadata.namespace, pod.metadata.name, exc.status, exc.reason,
                )  # fmt: skip
                return
        self.written[uid] = view

    def warning(self, pod: Any, reason: str, message: str) -> None:
        key = (pod.metadata.uid, reason, message)
        if key in self.events:
            return
        now = now_rfc3339()
        event = client.CoreV1Event(
            metadata=client.V1ObjectMeta(
                name=f"{pod.metadata.name}.{uuid.uuid4().hex[:16]}",
                namespace=pod.metadata.namespace,
            ),
            involved_object=client.V1ObjectReference(
                api_version="v1",
                kind="Pod",
                name=pod.metadata.name,
                namespace=pod.metadata.namespace,
                uid=pod.metadata.uid,
            ),
            reason=reason,
            message=message,
            type="Warning",
            count=1,
            first_timestamp=now,
            last_timestamp=now,
            source=client.V1EventSource(component=COMPONENT, host=pod.spec.node_name),
            reporting_component=COMPONENT,
            reporting_instance=pod.spec.node_name or "",
        )
        try:
            self.core.create_namespaced_event(pod.metadata.namespace, event)
        except client.ApiException as exc:
            # A namespace being deleted refuses new Events; the status says the same.
            log.warning("Cannot record %s for Pod %s: %s", reason, pod.metadata.name, exc.reason)
            return
        self.events.add(key)
        log.info("Pod %s/%s: %s: %s", pod.metadata.namespace, pod.metadata.name, reason, message)

    def forget(self, uid: str) -> None:
        self.written.pop(uid, None)
        self.events = {e for e in self.events if e[0] != uid}
