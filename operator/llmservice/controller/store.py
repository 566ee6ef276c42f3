"""What the watches have seen: LLMServices, their children and their Pods.

Fed by kopf's event handlers (the list at start, then every change), read by `reconcile()`,
so a converged LLMService is checked without a single API request. The operator's own writes
(children applied, the LLMService's status) go in as the API server answers them, without
waiting for the watch to bring them back, but never over a copy the watch brought since
(`upsert_over`). Objects are keyed by (kind, namespace, name) and grouped by the
`app.kubernetes.io/instance` label that every child carries.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from llmservice.controller.kinds import key_of

INSTANCE_LABEL = "app.kubernetes.io/instance"
COMPONENT_LABEL = "app.kubernetes.io/component"
Key = tuple[str, str, str]


class ClusterStore:
    """An in-memory mirror of the objects the operator cares about."""

    def __init__(self) -> None:
        self._objects: dict[Key, dict[str, Any]] = {}
        self._by_instance: dict[tuple[str, str], set[Key]] = defaultdict(set)

    @staticmethod
    def _instance(obj: Mapping[str, Any]) -> tuple[str, str] | None:
        meta = obj.get("metadata") or {}
        instance = (meta.get("labels") or {}).get(INSTANCE_LABEL)
        if obj.get("kind") == "LLMService":
            instance = meta.get("name")
        return (str(meta.get("namespace")), str(instance)) if instance else None

    def upsert(self, obj: Mapping[str, Any]) -> None:
        key = key_of(obj)
        self.remove(obj)
        self._objects[key] = copy.deepcopy(dict(obj))
        instance = self._instance(obj)
        if instance is not None:
            self._by_instance[instance].add(key)

    def upsert_over(self, obj: Mapping[str, Any], version: str | None) -> None:
        """Store ``obj``, the answer to the operator's own write, if the copy held is still
        the one the write was made over: of resource version ``version`` (None: there was
        none). A copy the watch has brought since stays, the write's own or a later one:
        its answer may be handled after the watch's events of later changes, and storing
        it then would leave the store behind for as long as the object does not change
        again. Resource versions are compared for equality only, never ordered."""
        held = self._objects.get(key_of(obj))
        held_version = None if held is None else (held.get("metadata") or {}).get("resourceVersion")
        if held_version == version:
            self.upsert(obj)

    def remove(self, obj: Mapping[str, Any]) -> None:
        key = key_of(obj)
        previous = self._objects.pop(key, None)
        if previous is None:
            return
        instance = self._instance(previous)
        if instance is not None:
            self._by_instance[instance].discard(key)
            if not self._by_instance[instance]:
                del self._by_instance[instance]

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self._objects.get((kind, namespace, name))

    def llmservices(self) -> list[dict[str, Any]]:
        """Every LLMService seen, in a stable order."""
        return [self._objects[key] for key in sorted(self._objects) if key[0] == "LLMService"]

    def children(self, namespace: str, instance: str) -> dict[Key, dict[str, Any]]:
        """Every stored object labelled with this instance, except Pods and the LLMService."""
        keys = self._by_instance.get((namespace, instance), set())
        return {key: self._objects[key] for key in keys if key[0] not in ("Pod", "LLMService")}

    def pods(self, namespace: str, instance: str, component: str) -> list[dict[str, Any]]:
        """The Pods of one component (engine or router) of one LLMService, by name."""
        keys = self._by_instance.get((namespace, instance), set())
        pods = [self._objects[key] for key in keys if key[0] == "Pod"]
        return sorted(
            (p for p in pods if p["metadata"].get("labels", {}).get(COMPONENT_LABEL) == component),
            key=lambda p: str(p["metadata"]["name"]),
        )
