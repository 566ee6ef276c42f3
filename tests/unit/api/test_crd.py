"""The committed CRD is the generated one, and it is a structural schema."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmservice.api.crd import build_crd, crd_yaml, openapi_schema
from llmservice.api.validation import SCALE_REPLICAS_PATH

REPO = Path(__file__).resolve().parents[3]
COMMITTED = REPO / "crds" / "llmservices.serving.llmservice.dev.yaml"
# kustomize loads no file from outside deploy/, nor Helm from outside its chart, so
# `make crds` writes a copy into each.
DEPLOY_COPY = REPO / "deploy" / "crd.yaml"
CHART_COPY = REPO / "deploy" / "helm" / "llmservice-operator" / "crds" / COMMITTED.name


def _nodes(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for name, child in schema.get("properties", {}).items():
        yield from _nodes(child, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from _nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _nodes(schema["additionalProperties"], f"{path}{{}}")


@pytest.mark.parametrize(
    "committed", [COMMITTED, DEPLOY_COPY, CHART_COPY], ids=["crds", "deploy", "chart"]
)
def test_committed_crd_is_up_to_date(committed: Path) -> None:
    assert committed.read_text(encoding="utf-8") == crd_yaml(), "run `make crds`"


def test_schema_is_structural() -> None:
    for path, node in _nodes(openapi_schema()):
        assert "$ref" not in node, path
        assert "title" not in node, path
        assert not ("properties" in node and "additionalProperties" in node), path
        assert "x-kubernetes-preserve-unknown-fields" not in node, path
        assert "propertyNames" not in node, path
        if node.get("x-kubernetes-int-or-string"):
            continue
        assert node.get("type") in {"object", "array", "string", "integer", "number", "boolean"}, (
            path
        )
        assert "anyOf" not in node, path


def test_every_spec_field_is_described() -> None:
    for path, node in _nodes(openapi_schema()["properties"]["spec"]):
        if path and not path.endswith(("[]", "{}")):
            assert node.get("description"), f"spec{path} has no description"


def test_cel_rules_carry_messages() -> None:
    rules = [
        rule
        for _, node in _nodes(openapi_schema())
        for rule in node.get("x-kubernetes-validations", [])
    ]
    assert len(rules) >= 15
    assert all(rule["message"] for rule in rules)


def test_printer_columns_and_short_name() -> None:
    version = build_crd()["spec"]["versions"][0]
    columns = [column["name"] for column in version["additionalPrinterColumns"]]
    assert columns[:6] == ["Ready", "Model", "GPUs", "Replicas", "Tokens/s", "Age"]
    assert build_crd()["spec"]["names"]["shortNames"] == ["llms"]
    # `kubectl scale`, an HPA or KEDA drive engine.replicas through the scale subresource;
    # offline validation knows which field it reads.
    assert ".spec." + ".".join(map(str, SCALE_REPLICAS_PATH)) == ".spec.engine.replicas"
    assert version["subresources"] == {
        "status": {},
        "scale": {
            "specReplicasPath": ".spec.engine.replicas",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.selector",
        },
    }


def test_generated_crd_is_valid_yaml_round_trip() -> None:
    assert yaml.safe_load(crd_yaml()) == build_crd()


def test_readme_field_reference_is_up_to_date() -> None:
    from llmservice.api.reference import BEGIN_MARKER, END_MARKER, reference_markdown

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    start, end = readme.index(BEGIN_MARKER), readme.index(END_MARKER) + len(END_MARKER) + 1
    assert readme[start:end] == reference_markdown(), "run `make docs`"
