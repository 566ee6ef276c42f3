"""Offline validation and the API server give the same verdict on every generated spec.

Hundreds of near-valid LLMServices (see `tests/unit/api/near_valid.py`) are judged twice:
by `parse_llmservice`, which `llmservice render` and the operator use, and by the sandbox's
API server with the committed CRD, through a server-side dry-run create with strict field
validation, which is what `kubectl apply` sends. Admitted or rejected must agree for each;
every disagreement is printed with the spec and both verdicts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
import yaml
from kubernetes import client

from llmservice.api.validation import InvalidLLMService, parse_llmservice
from llmservice.render import render_all
from tests.e2e.children import dry_run_apply
from tests.e2e.llmservice_crd import create
from tests.unit.api.near_valid import Mutant, NearValidSpecs

pytestmark = pytest.mark.e2e

SEED = 20260410
SPEC_COUNT = 600


@dataclass(frozen=True)
class Verdict:
    admitted: bool
    reason: str


def offline_verdict(document: dict[str, Any]) -> Verdict:
    try:
        parse_llmservice(document)
    except InvalidLLMService as exc:
        return Verdict(admitted=False, reason=str(exc))
    return Verdict(admitted=True, reason="")


def server_verdict(
    kube: client.ApiClient, crd: dict[str, Any], namespace: str, document: dict[str, Any]
) -> Verdict:
    try:
        create(kube, crd, namespace, document, dry_run=True)
    except client.ApiException as exc:
        # 422 for schema and rule violations, 400 for unknown or duplicate fields; any other
        # status is a fault of the test or the sandbox, not a verdict.
        if exc.status not in (400, 422):
            raise
        return Verdict(admitted=False, reason=json.loads(exc.body or "{}").get("message", ""))
    return Verdict(admitted=True, reason="")


def report(mutant: Mutant, offline: Verdict, server: Verdict) -> str:
    def word(verdict: Verdict) -> str:
        return "admitted" if verdict.admitted else f"rejected ({verdict.reason})"

    spec = yaml.safe_dump(mutant.document["spec"], sort_keys=False, width=100)
    return (
        f"- {mutant.description}\n  offline: {word(offline)}\n  server:  {word(server)}\n"
        + "\n".join("    " + line for line in spec.splitlines())
    )


def generated(crd: dict[str, Any]) -> list[Mutant]:
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    mutants = NearValidSpecs(schema, SEED).generate(SPEC_COUNT)
    assert len(mutants) >= 300
    return mutants


def test_offline_validation_and_api_server_agree_on_generated_specs(
    llmservice_crd: dict[str, Any], kube: client.ApiClient, namespace: str
) -> None:
    mutants = generated(llmservice_crd)

    disagreements = []
    admitted = 0
    for mutant in mutants:
        offline = offline_verdict(mutant.document)
        server = server_verdict(kube, llmservice_crd, namespace, mutant.document)
        admitted += server.admitted
        if offline.admitted != server.admitted:
            disagreements.append(report(mutant, offline, server))

    # Both verdicts must occur often, or the generator is not testing the edge.
    assert 0.1 * len(mutants) < admitted < 0.9 * len(mutants), admitted
    assert not disagreements, (
        f"{len(disagreements)} of {len(mutants)} specs judged differently:\n"
        + "\n".join(disagreements)
    )


def test_every_admitted_generated_spec_renders_children_the_api_server_accepts(
    llmservice_crd: dict[str, Any], kube: client.ApiClient, namespace: str
) -> None:
    """Admitted means it works: no child of an admitted spec is refused (a refusal would
    leave the LLMService failing for ever instead of being rejected at admission)."""
    refused = []
    admitted = 0
    for mutant in generated(llmservice_crd):
        try:
            service = parse_llmservice(mutant.document)
        except InvalidLLMService:
            continue
        admitted += 1
        problems = [
            problem
            for child in render_all(service)
            if (problem := dry_run_apply(kube, namespace, child)) is not None
        ]
        if problems:
            refused.append(f"- {mutant.description}\n    " + "\n    ".join(problems))
    assert admitted >= 100, admitted
    assert not refused, f"{len(refused)} admitted specs have refused children:\n" + "\n".join(
        refused
    )
