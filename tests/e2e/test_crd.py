"""The generated CRD on a real API server: it installs, its rules reject what they should
with their messages, and every rendered example is accepted by a server-side dry run.

The invalid and valid specs are the same table the offline tests use
(`tests/unit/api/*_specs.yaml`), so the CEL rules are checked by the API server itself.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, dynamic
from kubernetes.dynamic.exceptions import ResourceNotFoundError

from llmservice.sandbox.product import Product
from tests.e2e.crds import wait_established
from tests.unit.api.fixtures import INVALID_CASES, VALID_CASES

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "crds" / "llmservices.serving.llmservice.dev.yaml"
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
FIELD_MANAGER = "llmservice-e2e"
# kubectl asks for strict field validation, so unknown fields are errors, not pruned.
STRICT = "Strict"
# Cases about what only a client checks (the apiVersion) are not the API server's job.
API_INVALID_CASES = [c for c in INVALID_CASES if not c.get("offline_only")]
# API groups the sandbox does not serve: the operator renders ServiceMonitors only where the
# Prometheus operator's CRD exists, which a bare control plane never has.
UNSERVED_GROUPS = ("monitoring.coreos.com",)


def crd_document() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(CRD_FILE.read_text(encoding="utf-8"))
    return document


@pytest.fixture(scope="module")
def llmservice_crd(kube: client.ApiClient) -> Iterator[dict[str, Any]]:
    """Install the committed CRD and wait until it is Established."""
    document: Any = crd_document()
    extensions = client.ApiextensionsV1Api(kube)
    name = document["metadata"]["name"]
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


def test_crd_installs_with_its_names(
    llmservice_crd: dict[str, Any], kube: client.ApiClient
) -> None:
    resources: Any = client.CustomObjectsApi(kube).list_cluster_custom_object(
        llmservice_crd["spec"]["group"],
        served_version(llmservice_crd),
        llmservice_crd["spec"]["names"]["plural"],
    )
    assert resources["items"] == []
    assert "llms" in llmservice_crd["spec"]["names"].get("shortNames", [])


@pytest.mark.parametrize("case", API_INVALID_CASES, ids=lambda case: str(case["name"]))
def test_api_rejects_invalid_llmservice(
    case: dict[str, Any], llmservice_crd: dict[str, Any], kube: client.ApiClient, namespace: str
) -> None:
    with pytest.raises(client.ApiException) as raised:
        create(kube, llmservice_crd, namespace, case["document"], dry_run=False)
    # 422 for schema and CEL violations; 400 for unknown fields under strict validation.
    assert raised.value.status in (400, 422), raised.value.body
    expected = str(case.get("api_message", case["message"])).lower()
    message = json.loads(raised.value.body or "{}")["message"]
    assert expected in message.lower(), message


def test_api_rejects_rope_factor_with_the_cel_message(
    llmservice_crd: dict[str, Any], kube: client.ApiClient, namespace: str
) -> None:
    case = next(c for c in INVALID_CASES if c["name"] == "rope factor not above one")
    with pytest.raises(client.ApiException) as raised:
        create(kube, llmservice_crd, namespace, case["document"], dry_run=False)
    message = json.loads(raised.value.body or "{}")["message"]
    assert "ropeScaling.factor must be greater than 1" in message


@pytest.mark.parametrize("case", VALID_CASES, ids=lambda case: str(case["name"]))
def test_api_accepts_valid_llmservice(
    case: dict[str, Any], llmservice_crd: dict[str, Any], kube: client.ApiClient, namespace: str
) -> None:
    created = create(kube, llmservice_crd, namespace, case["document"], dry_run=True)
    assert created["metadata"]["name"] == case["document"]["metadata"]["name"]


def render(product: Product, example: Path, namespace: str) -> list[dict[str, Any]]:
    """`llmservice render` as a user runs it, from the installed wheel."""
    result = subprocess.run(
        product.command("render", "--namespace", namespace, str(example)),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: path.stem)
def test_rendered_example_passes_server_side_dry_run(
    example: Path,
    llmservice_crd: dict[str, Any],
    kube: client.ApiClient,
    namespace: str,
    product: Product,
) -> None:
    api = dynamic.DynamicClient(kube)  # type: ignore[no-untyped-call]
    documents = [d for d in yaml.safe_load_all(example.read_text(encoding="utf-8")) if d]
    documents += render(product, example, namespace)
    for document in documents:
        document.setdefault("metadata", {}).setdefault("namespace", namespace)
        group = document["apiVersion"].rpartition("/")[0]
        try:
            resource = api.resources.get(api_version=document["apiVersion"], kind=document["kind"])
        except ResourceNotFoundError:
            assert group in UNSERVED_GROUPS, f"{document['apiVersion']} is not served"
            continue
        if not resource.namespaced:
            document["metadata"].pop("namespace")
        resource.server_side_apply(
            body=document,
            name=document["metadata"]["name"],
            namespace=document["metadata"].get("namespace"),
            field_manager=FIELD_MANAGER,
            force_conflicts=True,
            dry_run="All",
            query_params=[("fieldValidation", STRICT)],
        )
