"""The committed LLMService CRD on the sandbox's API server, and a create call like kubectl's.

Shared by the CRD table tests and the agreement property test, which each install the CRD
for their module and remove it afterwards.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from tests.e2e.crds import wait_established
from tests.e2e.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "crds" / "llmservices.serving.llmservice.dev.yaml"
# kubectl asks for strict field validation, so unknown fields are errors, not pruned.
STRICT = "Strict"


def crd_document() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(CRD_FILE.read_text(encoding="utf-8"))
    return document


def _absent(extensions: client.ApiextensionsV1Api, name: str) -> bool:
    try:
        extensions.read_custom_resource_definition(name)
    except client.ApiException as exc:
        if exc.status == 404:
            return True
        raise
    return False


@pytest.fixture(scope="module")
def llmservice_crd(kube: client.ApiClient) -> Iterator[dict[str, Any]]:
    """Install the committed CRD and wait until it is Established; remove it afterwards."""
    document: Any = crd_document()
    extensions = client.ApiextensionsV1Api(kube)
    name = document["metadata"]["name"]
    # A previous module's copy may still be terminating: a CRD goes only after its objects.
    eventually(lambda: _absent(extensions, name), timeout=60, what=f"CRD {name} to be gone")
    rejected = None
    try:
        extensions.create_custom_resource_definition(document)
    except client.ApiException as exc:
        rejected = json.loads(exc.body or "{}").get("message", exc.reason)
    if rejected is not None:
        pytest.fail(f"the API server rejects {CRD_FILE.name}: {rejected}", pytrace=False)

    wait_established(kube, name)
    yield document
    extensions.delete_custom_resource_definition(name)


def served_version(crd: dict[str, Any]) -> str:
    return str(next(v["name"] for v in crd["spec"]["versions"] if v.get("storage")))


def create(
    kube: client.ApiClient, crd: dict[str, Any], namespace: str, body: dict[str, Any], dry_run: bool
) -> Any:
    """Create `body` with strict field validation, as `kubectl apply` or `create` does."""
    spec = crd["spec"]
    body = dict(body, metadata=dict(body["metadata"], namespace=namespace))
    return client.CustomObjectsApi(kube).create_namespaced_custom_object(
        spec["group"],
        served_version(crd),
        namespace,
        spec["names"]["plural"],
        body,
        dry_run="All" if dry_run else None,
        field_validation=STRICT,
    )
