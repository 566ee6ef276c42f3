"""A reconcile's status write, against the real API server: made onto the version of the
LLMService it was worked out from only, and in the operator's store at once.

The reconciles run here by hand, over a store fed by hand (no operator runs, no watch): so
the store holds only what the test and the writes put in it, which is what a running
operator's store holds between a write and the watch bringing it back.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from kubernetes import client

from llmservice.controller.kube import ClusterAPI
from llmservice.controller.reconcile import Context, Outcome, reconcile
from llmservice.controller.store import ClusterStore
from llmservice.controller.throughput import ThroughputTracker
from tests.e2e.llmservices import GROUP, PLURAL, VERSION, create_llms, get_llms, minimal


def _reconcile(kube: client.ApiClient, store: ClusterStore, namespace: str) -> Outcome:
    """One reconcile of LLMService `chat` from the store's copy, as the operator runs it."""

    async def run() -> Outcome:
        async with httpx.AsyncClient() as http:
            context = Context(
                api=ClusterAPI(kube),
                store=store,
                throughput=ThroughputTracker(http),
                monitoring_crd_installed=False,
            )
            body = store.get("LLMService", namespace, "chat")
            assert body is not None
            return await reconcile(body, context)

    return asyncio.run(run())


def _created(
    custom: client.CustomObjectsApi, namespace: str
) -> tuple[ClusterStore, dict[str, Any]]:
    """LLMService `chat` created, and a store holding the copy read back (also returned)."""
    create_llms(custom, namespace, minimal())
    copy = get_llms(custom, namespace, "chat")
    store = ClusterStore()
    store.upsert(copy)
    return store, copy


def _held(store: ClusterStore, namespace: str) -> dict[str, Any]:
    held = store.get("LLMService", namespace, "chat")
    assert held is not None
    return held


def test_the_status_written_is_what_the_next_reconcile_starts_from(
    kube: client.ApiClient,
    custom: client.CustomObjectsApi,
    namespace: str,
    llmservice_crd: dict[str, Any],
) -> None:
    store, _ = _created(custom, namespace)

    assert _reconcile(kube, store, namespace).status_written
    live = get_llms(custom, namespace, "chat")
    assert live["status"]["observedGeneration"] == 1
    held = _held(store, namespace)
    assert held["metadata"]["resourceVersion"] == live["metadata"]["resourceVersion"]
    assert held["status"] == live["status"]

    # With nothing changed, the next reconcile finds its status written already; from the
    # copy before the write it would write again, or fail on the version.
    assert not _reconcile(kube, store, namespace).status_written
    after = get_llms(custom, namespace, "chat")
    assert after["metadata"]["resourceVersion"] == live["metadata"]["resourceVersion"]


def test_a_status_worked_out_from_an_older_copy_is_refused_and_kept_out_of_the_store(
    kube: client.ApiClient,
    custom: client.CustomObjectsApi,
    namespace: str,
    llmservice_crd: dict[str, Any],
) -> None:
    store, older = _created(custom, namespace)
    # A change the store has not heard of yet: someone else's status, say.
    patch = {"status": {"observedGeneration": 7}}
    custom.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, "chat", patch)

    with pytest.raises(client.ApiException) as refused:
        _reconcile(kube, store, namespace)
    assert refused.value.status == 409
    assert get_llms(custom, namespace, "chat")["status"] == {"observedGeneration": 7}
    held = _held(store, namespace)
    assert held["metadata"]["resourceVersion"] == older["metadata"]["resourceVersion"]
