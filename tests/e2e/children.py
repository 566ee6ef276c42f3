"""Server-side dry-run apply of rendered children, as the operator applies them."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from kubernetes import client, dynamic
from kubernetes.dynamic.exceptions import ApiException, ResourceNotFoundError

from tests.e2e.llmservice_crd import STRICT

FIELD_MANAGER = "llmservice-e2e"
# API groups the sandbox does not serve: the operator renders ServiceMonitors only where the
# Prometheus operator's CRD exists, which a bare control plane never has.
UNSERVED_GROUPS = ("monitoring.coreos.com",)


@cache
def _dynamic(kube: client.ApiClient) -> dynamic.DynamicClient:
    return dynamic.DynamicClient(kube)  # type: ignore[no-untyped-call]


def dry_run_apply(kube: client.ApiClient, namespace: str, document: dict[str, Any]) -> str | None:
    """Apply `document` with dryRun=All; None if the API server accepts it, else why not."""
    api = _dynamic(kube)
    document = dict(document, metadata=dict(document.get("metadata", {})))
    group = document["apiVersion"].rpartition("/")[0]
    try:
        resource = api.resources.get(api_version=document["apiVersion"], kind=document["kind"])
    except ResourceNotFoundError:
        assert group in UNSERVED_GROUPS, f"{document['apiVersion']} is not served"
        return None
    if resource.namespaced:
        document["metadata"]["namespace"] = namespace
    else:
        document["metadata"].pop("namespace", None)
    try:
        resource.server_side_apply(
            body=document,
            name=document["metadata"]["name"],
            namespace=document["metadata"].get("namespace"),
            field_manager=FIELD_MANAGER,
            force_conflicts=True,
            dry_run="All",
            query_params=[("fieldValidation", STRICT)],
        )
    except ApiException as exc:
        message = json.loads(exc.body or "{}").get("message", exc.reason)
        return f"{document['kind']} {document['metadata']['name']}: HTTP {exc.status}: {message}"
    return None
