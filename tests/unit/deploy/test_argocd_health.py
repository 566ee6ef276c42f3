"""The Argo CD health script on statuses recorded on the sandbox and in the operator's shape.

The e2e test (tests/e2e/test_argocd_health.py) runs the same script on live objects; here it
runs on statuses recorded from such a run, and on cases that are hard to catch live (numbers
as strings, a Ready condition not yet written, InvalidSpec, ApplyFailed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.deploy.argocd_health import (
    ARGOCD,
    CONFIGMAP_KEY,
    HEALTH_SCRIPT,
    Health,
    argocd_health,
)

RECORDED = yaml.safe_load(
    (Path(__file__).parent / "argocd_recorded.yaml").read_text(encoding="utf-8")
)


@pytest.mark.parametrize("case", RECORDED, ids=[c["case"] for c in RECORDED])
def test_recorded_statuses(case: dict[str, Any]) -> None:
    assert argocd_health(case["object"]) == Health(**case["health"])


def test_the_recordings_cover_every_state() -> None:
    assert {c["health"]["status"] for c in RECORDED} == {"Progressing", "Healthy", "Degraded"}
    assert {c["case"] for c in RECORDED} >= {
        "new",
        "rolling",
        "ready",
        "stalled-unschedulable",
        "scaled-to-zero",
    }


def condition(kind: str, status: str, reason: str, message: str = "") -> dict[str, Any]:
    return {
        "type": kind,
        "status": status,
        "observedGeneration": 2,
        "lastTransitionTime": "2026-01-01T00:00:00Z",
        "reason": reason,
        "message": message,
    }


def summary(
    ready: tuple[str, str, str], reconciling: tuple[str, str, str], stalled: tuple[str, str, str]
) -> list[dict[str, Any]]:
    return [
        condition("Ready", *ready),
        condition("Reconciling", *reconciling),
        condition("Stalled", *stalled),
    ]


def llmservice(generation: int = 2, status: dict[str, Any] | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "serving.llmservice.dev/v1alpha1",
        "kind": "LLMService",
        "metadata": {"name": "chat", "namespace": "team-a", "generation": generation},
        "spec": {"model": {"name": "Qwen/Qwen2.5-0.5B-Instruct"}},
    }
    if status is not None:
        obj["status"] = status
    return obj


READY = summary(
    ("True", "Available", "the endpoint serves requests"),
    ("False", "Reconciled", ""),
    ("False", "Reconciled", ""),
)
UNSCHEDULABLE = summary(
    ("False", "Unschedulable", "EngineAvailable: 0/2 nodes are available: 2 Insufficient gpu"),
    ("False", "Unschedulable", ""),
    ("True", "Unschedulable", "EngineAvailable: 0/2 nodes are available: 2 Insufficient gpu"),
)
ROLLING = summary(
    ("False", "WaitingForEngine", "EngineAvailable: 1/3 replicas ready"),
    ("True", "WaitingForEngine", "EngineAvailable: 1/3 replicas ready"),
    ("False", "WaitingForEngine", ""),
)
SCALED_TO_ZERO = summary(
    ("False", "ScaledToZero", "no engine replica runs; RouterAvailable: 0/2 replicas ready"),
    ("False", "ScaledToZero", ""),
    ("False", "ScaledToZero", ""),
)
SCALED_TO_ZERO_ROUTER_UP = summary(
    ("True", "ScaledToZero", "no engine replica runs; the router is up"),
    ("False", "ScaledToZero", ""),
    ("False", "ScaledToZero", ""),
)


@pytest.mark.parametrize(
    ("obj", "status", "words"),
    [
        pytest.param(llmservice(), "Progressing", "report status", id="no-status"),
        pytest.param(
            llmservice(status={"observedGeneration": 1}), "Progressing", "status", id="no-cond"
        ),
        pytest.param(
            llmservice(status={"observedGeneration": 2, "conditions": READY}),
            "Healthy",
            "serves requests",
            id="ready",
        ),
        pytest.param(
            llmservice(3, {"observedGeneration": 2, "conditions": READY}),
            "Progressing",
            "generation 3",
            id="ready-but-spec-changed",
        ),
        pytest.param(
            llmservice(status={"observedGeneration": 2, "conditions": ROLLING}),
            "Progressing",
            "WaitingForEngine: EngineAvailable: 1/3 replicas ready",
            id="rolling",
        ),
        pytest.param(
            llmservice(status={"observedGeneration": 2, "conditions": UNSCHEDULABLE}),
            "Degraded",
            "Unschedulable: EngineAvailable: 0/2 nodes are available",
            id="stalled",
        ),
        pytest.param(
            llmservice(3, {"observedGeneration": 2, "conditions": UNSCHEDULABLE}),
            "Progressing",
            "generation 3",
            id="stalled-but-spec-fixed",
        ),
        pytest.param(
            llmservice(status={"observedGeneration": 2, "conditions": SCALED_TO_ZERO}),
            "Healthy",
            "No engine replica serves requests: ScaledToZero",
            id="scaled-to-zero",
        ),
        pytest.param(
            llmservice(status={"observedGeneration": 2, "conditions": SCALED_TO_ZERO_ROUTER_UP}),
            "Healthy",
            "ScaledToZero: no engine replica runs; the router is up",
            id="scaled-to-zero-router-up",
        ),
        pytest.param(
            llmservice(
                status={
                    "observedGeneration": 2,
                    "conditions": summary(
                        ("False", "ApplyFailed", "applying the engine Deployment: 500"),
                        ("True", "ApplyFailed", "applying the engine Deployment: 500"),
                        ("False", "ApplyFailed", ""),
                    ),
                }
            ),
            "Progressing",
            "ApplyFailed",
            id="apply-failed",
        ),
        pytest.param(
            llmservice(
                status={
                    "observedGeneration": 2,
                    "conditions": summary(
                        ("False", "InvalidSpec", "model.name: no such claim"),
                        ("False", "InvalidSpec", ""),
                        ("True", "InvalidSpec", "model.name: no such claim"),
                    ),
                }
            ),
            "Degraded",
            "InvalidSpec: model.name: no such claim",
            id="invalid-spec",
        ),
        pytest.param(
            llmservice(
                status={
                    "observedGeneration": 2,
                    "conditions": [condition("Ready", "Unknown", "Starting")],
                }
            ),
            "Progressing",
            "Ready",
            id="ready-unknown",
        ),
        pytest.param(
            llmservice(
                status={
                    "observedGeneration": 2,
                    "conditions": [condition("EngineAvailable", "True", "Available")],
                }
            ),
            "Progressing",
            "Ready",
            id="no-ready-condition",
        ),
        pytest.param(
            llmservice(
                status={
                    "observedGeneration": 2,
                    "conditions": [condition("Ready", "False", "Broken", "the router is gone")],
                }
            ),
            "Degraded",
            "Broken: the router is gone",
            id="not-ready-and-not-reconciling",
        ),
    ],
)
def test_health_follows_the_kstatus_conditions(
    obj: dict[str, Any], status: str, words: str
) -> None:
    health = argocd_health(obj)
    assert health.status == status
    assert words in health.message


def test_generations_given_as_strings_still_compare() -> None:
    # Argo CD hands json.Number values to Lua as strings.
    obj = llmservice(status={"observedGeneration": "2", "conditions": READY})
    obj["metadata"]["generation"] = "2"
    assert argocd_health(obj).status == "Healthy"


def test_the_runner_refuses_libraries_argo_cd_does_not_load() -> None:
    # Otherwise a script calling string functions would pass here and fail in Argo CD.
    with pytest.raises(Exception, match="string"):
        argocd_health(llmservice(), 'return {status = string.upper("healthy")}')
    with pytest.raises(Exception, match="index a string value"):
        argocd_health(llmservice(), 'return {status = ("Healthy"):sub(1)}')


def test_the_runner_refuses_an_invalid_status() -> None:
    with pytest.raises(AssertionError, match="Fine"):
        argocd_health(llmservice(), 'return {status = "Fine", message = ""}')


def test_the_component_merges_the_script_under_argo_cds_key() -> None:
    component = yaml.safe_load((ARGOCD / "kustomization.yaml").read_text(encoding="utf-8"))
    assert component["kind"] == "Component"
    (generator,) = component["configMapGenerator"]
    assert generator["name"] == "argocd-cm"
    assert generator["behavior"] == "merge"
    assert generator["files"] == [f"{CONFIGMAP_KEY}={HEALTH_SCRIPT.name}"]
    assert component["generatorOptions"]["disableNameSuffixHash"] is True
