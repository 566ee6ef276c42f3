"""The store keeps the watch's newest copy: the operator's own writes go in only over the
copy they were made over."""

from __future__ import annotations

from typing import Any

from llmservice.controller.store import ClusterStore


def _deployment(version: str, replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "namespace": "ns",
            "name": "chat-engine",
            "resourceVersion": version,
            "labels": {"app.kubernetes.io/instance": "chat"},
        },
        "spec": {"replicas": replicas},
    }


def _held(store: ClusterStore) -> tuple[str, int]:
    held = store.get("Deployment", "ns", "chat-engine")
    assert held is not None
    return held["metadata"]["resourceVersion"], held["spec"]["replicas"]


def test_a_write_over_the_copy_still_held_replaces_it() -> None:
    store = ClusterStore()
    store.upsert(_deployment("10", 1))
    store.upsert_over(_deployment("12", 2), "10")
    assert _held(store) == ("12", 2)
    assert set(store.children("ns", "chat")) == {("Deployment", "ns", "chat-engine")}


def test_a_copy_the_watch_brought_after_the_write_stays() -> None:
    store = ClusterStore()
    store.upsert(_deployment("10", 1))
    store.upsert(_deployment("13", 3))  # the watch, before the write's answer is handled
    store.upsert_over(_deployment("12", 2), "10")
    assert _held(store) == ("13", 3)


def test_a_created_object_goes_in_unless_the_watch_has_it_already() -> None:
    store = ClusterStore()
    store.upsert_over(_deployment("12", 1), None)
    assert _held(store) == ("12", 1)
    watched = ClusterStore()
    watched.upsert(_deployment("14", 1))
    watched.upsert_over(_deployment("12", 1), None)
    assert _held(watched) == ("14", 1)
