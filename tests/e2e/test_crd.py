"""The generated CRD on a real API server: it installs, its rules reject what they should
with their messages, and every rendered example is accepted by a server-side dry run.

The invalid and valid specs are the same table the offline tests use
(`tests/unit/api/*_specs.yaml`), so the CEL rules are checked by the API server itself.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from llmservice.api.validation import parse_llmservice
from llmservice.render import render_all
from llmservice.sandbox.product import Product
from tests.e2e.children import dry_run_apply
from tests.e2e.llmservice_crd import create, served_version
from tests.unit.api.fixtures import INVALID_CASES, VALID_CASES

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
# Cases about what only a client checks (the apiVersion) are not the API server's job.
API_INVALID_CASES = [c for c in INVALID_CASES if not c.get("offline_only")]


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
    documents = [d for d in yaml.safe_load_all(example.read_text(encoding="utf-8")) if d]
    documents += render(product, example, namespace)
    problems = [p for d in documents if (p := dry_run_apply(kube, namespace, d)) is not None]
    assert problems == []


@pytest.mark.parametrize("case", VALID_CASES, ids=lambda case: str(case["name"]))
def test_valid_llmservice_renders_children_the_api_server_accepts(
    case: dict[str, Any], llmservice_crd: dict[str, Any], kube: client.ApiClient, namespace: str
) -> None:
    # The boundary cases of the valid table: admitted must mean every child applies.
    children = render_all(parse_llmservice(case["document"]))
    problems = [p for c in children if (p := dry_run_apply(kube, namespace, c)) is not None]
    assert problems == []
