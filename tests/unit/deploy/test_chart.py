"""The Helm chart's files, read without helm: its version, its copy of the RBAC rules, its
documented values. What it renders is compared with deploy/ in tests/e2e/test_helm_chart.py,
where the sandbox build provides helm.
"""

from __future__ import annotations

import re
import tomllib
from typing import Any

import yaml

from tests.unit.deploy.manifests import DEPLOY, REPO, one

CHART = DEPLOY / "helm" / "llmservice-operator"


def chart() -> dict[str, Any]:
    metadata: dict[str, Any] = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    return metadata


def rules_block(text: str) -> str:
    """The text of the top-level `rules:` list, comments included, up to the next object."""
    match = re.search(r"^rules:\n(.*?)(?=^---$|\Z)", text, re.MULTILINE | re.DOTALL)
    assert match is not None, "no top-level `rules:`"
    return match[1].rstrip() + "\n"


def test_chart_metadata() -> None:
    metadata = chart()
    assert metadata["apiVersion"] == "v2"
    assert metadata["name"] == "llmservice-operator"
    assert metadata["version"] == "0.1.0"


def test_app_version_is_the_project_version_and_the_deploy_image_tag() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    app_version = chart()["appVersion"]
    assert app_version == project["project"]["version"]
    image = one("Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image.rsplit(":", 1)[1] == app_version


def test_cluster_role_rules_are_a_copy_of_deploy() -> None:
    # Comments included: deploy/rbac.yaml explains each rule, and the copy must not drift
    # from the explanation either.
    deploy = rules_block((DEPLOY / "rbac.yaml").read_text(encoding="utf-8"))
    chart_text = (CHART / "templates" / "clusterrole.yaml").read_text(encoding="utf-8")
    assert rules_block(chart_text) == deploy, (
        "copy the ClusterRole's `rules:` block of deploy/rbac.yaml into "
        "deploy/helm/llmservice-operator/templates/clusterrole.yaml"
    )
    assert yaml.safe_load(f"rules:\n{deploy}")["rules"] == one("ClusterRole")["rules"]


def test_chart_creates_no_namespace() -> None:
    # `helm install --create-namespace` creates it; a templated one would be deleted, with
    # everything in it, by `helm uninstall`.
    for template in (CHART / "templates").glob("*.yaml"):
        assert "kind: Namespace" not in template.read_text(encoding="utf-8"), template.name


def test_every_value_is_documented() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    readme = (CHART / "README.md").read_text(encoding="utf-8")
    for name in values:
        assert re.search(rf"^\| `{re.escape(name)}[.`]", readme, re.MULTILINE), (
            f"document `{name}` in the values table of {CHART / 'README.md'}"
        )
