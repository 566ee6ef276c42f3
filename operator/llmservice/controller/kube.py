"""The one module that talks to the API server.

Writes are server-side apply under one field manager with `force`: the operator owns the
fields it renders and takes them back from anyone who changed them (drift is reverted),
while fields others own (users' extra labels and annotations) are left alone. Every call
has an explicit timeout. The kubernetes client is synchronous, so calls run in threads.
Failed requests are reported by Kubernetes verb and HTTP code to `on_error` (the operator's
metrics), code 0 when no answer came.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from kubernetes import client

from llmservice.api.status import LLMServiceStatus
from llmservice.controller.kinds import LLMSERVICE, Kind

FIELD_MANAGER = "llmservice-operator"
REQUEST_TIMEOUT_SECONDS = 20
REPORTING_CONTROLLER = "serving.llmservice.dev/operator"
# Kubernetes verbs of the HTTP methods the operator uses (a GET of a collection is `list`).
VERBS = {"GET": "get", "POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}

log = logging.getLogger(__name__)

__all__ = ["FIELD_MANAGER", "ClusterAPI", "is_transient"]


def is_transient(error: BaseException) -> bool:
    """Errors worth retrying: timeouts, throttling, conflicts and server errors."""
    if isinstance(error, client.ApiException):
        return error.status in (0, 408, 409, 429) or error.status >= 500
    return isinstance(error, OSError | TimeoutError | ConnectionError)


class ClusterAPI:
    """Typed operations on one cluster, through one `ApiClient`."""

    def __init__(
        self,
        api_client: client.ApiClient,
        instance: str = "",
        on_error: Callable[[str, int], None] | None = None,
    ) -> None:
        self._api = api_client
        self._instance = instance
        self._on_error = on_error

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
        verb: str | None = None,
    ) -> Any:
        try:
            return self._request(method, path, body, query, content_type)
        except client.ApiException as error:
            if self._on_error is not None:
                self._on_error(verb or VERBS.get(method, method.lower()), error.status or 0)
            raise
        except Exception:  # no answer: connection refused, timeouts, urllib3's own errors
            if self._on_error is not None:
                self._on_error(verb or VERBS.get(method, method.lower()), 0)
            raise

    def _request(
        self,
        method: str,
        path: str,
        body: Any,
        query: list[tuple[str, str]] | None,
        content_type: str,
    ) -> Any:
        method, url, headers, serialized, post = self._api.param_serialize(
            method,
            path,
            query_params=query or [],
            header_params={"Content-Type": content_type, "Accept": "application/json"},
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self._api.call_api(
            method, url, headers, serialized, post, _request_timeout=REQUEST_TIMEOUT_SECONDS
        )
        data: bytes = response.read()  # type: ignore[no-untyped-call]
        if not 200 <= response.status < 300:
            raise client.ApiException(
                status=response.status,
                reason=response.reason,
                body=data.decode("utf-8", "replace") if data else None,
            )
        return json.loads(data) if data else None

    async def apply(self, kind: Kind, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply one object; returns the live object after the apply."""
        meta = obj["metadata"]
        path = kind.object_path(meta["namespace"], meta["name"])
        query = [("fieldManager", FIELD_MANAGER), ("force", "true")]
        result: dict[str, Any] = await asyncio.to_thread(
            self._call, "PATCH", path, dict(obj), query, "application/apply-patch+yaml"
        )
        return result

    async def delete(self, kind: Kind, namespace: str, name: str) -> None:
        """Delete one object in the background (its dependents follow); gone is fine."""
        body = {"propagationPolicy": "Background"}
        try:
            await asyncio.to_thread(self._call, "DELETE", kind.object_path(namespace, name), body)
        except client.ApiException as error:
            if error.status != 404:
                raise

    async def patch_status(
        self,
        namespace: str,
        name: str,
        status: LLMServiceStatus,
        resource_version: str | None = None,
    ) -> dict[str, Any]:
        """Replace the LLMService's status fields (merge patch of the status subresource),
        and give the LLMService as the patch left it.

        With ``resource_version`` the patch applies to that version of the object only (a
        409 Conflict otherwise): a status worked out from an older copy never replaces a
        newer one. The status goes out through its model, by alias: a field the model does
        not know cannot be sent (and then pruned by the API server without a word).
        """
        path = LLMSERVICE.object_path(namespace, name) + "/status"
        document = status.model_dump(mode="json", by_alias=True, exclude_none=True)
        patch: dict[str, Any] = {"status": document}
        if resource_version is not None:
            patch["metadata"] = {"resourceVersion": resource_version}
        result: dict[str, Any] = await asyncio.to_thread(
            self._call, "PATCH", path, patch, None, "application/merge-patch+json"
        )
        return result

    async def crd_exists(self, name: str) -> bool:
        path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"
        try:
            await asyncio.to_thread(self._call, "GET", path)
        except client.ApiException as error:
            if error.status == 404:
                return False
            raise
        return True

    async def failed_mounts(self, namespace: str) -> dict[str, str]:
        """Pod name -> the kubelet's latest FailedMount message, in one namespace.

        Asked only while a Pod of an LLMService waits in ContainerCreating, which is how a
        kubelet shows a volume it cannot mount (a missing API-key Secret, say): the reason
        is in Events only. The field selector keeps the answer to those few Events.
        """
        path = f"/apis/events.k8s.io/v1/namespaces/{namespace}/events"
        query = [("fieldSelector", "reason=FailedMount")]
        found = await asyncio.to_thread(
            self._call, "GET", path, None, query, "application/json", "list"
        )
        latest: dict[str, tuple[str, str]] = {}
        for event in (found or {}).get("items") or []:
            regarding = event.get("regarding") or {}
            if regarding.get("kind") != "Pod":
                continue
            seen = str(
                (event.get("series") or {}).get("lastObservedTime")
                or event.get("deprecatedLastTimestamp")
                or event.get("eventTime")
                or ""
            )
            pod = str(regarding.get("name"))
            if pod not in latest or seen >= latest[pod][0]:
                latest[pod] = (seen, str(event.get("note") or ""))
        return {pod: note for pod, (_, note) in latest.items()}

    async def emit_event(
        self, owner: Mapping[str, Any], event_type: str, reason: str, note: str
    ) -> None:
        """Record an events.k8s.io/v1 Event about the LLMService."""
        meta = owner["metadata"]
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        event = {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            # Named like kubectl's events: <object>.<unique hex suffix>.
            "metadata": {
                "name": f"{meta['name']}.{time.time_ns():x}",
                "namespace": meta["namespace"],
            },
            "eventTime": now,
            "type": event_type,
            "reason": reason,
            "action": "Reconcile",
            "note": note[:1024],
            "reportingController": REPORTING_CONTROLLER,
            "reportingInstance": self._instance or REPORTING_CONTROLLER,
            "regarding": {
                "apiVersion": LLMSERVICE.api_version,
                "kind": LLMSERVICE.kind,
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
            },
        }
        path = f"/apis/events.k8s.io/v1/namespaces/{meta['namespace']}/events"
        try:
            await asyncio.to_thread(self._call, "POST", path, event)
        except client.ApiException as error:
            # Events are best effort: the same facts are in the status conditions.
            log.warning("Could not record event %s for %s: %s", reason, meta["name"], error.reason)
