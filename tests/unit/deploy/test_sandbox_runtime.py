"""The sandbox's local runtime runs the operator Pod of deploy/ as `llmservice operator`,
with its Pod IP and port as kopf's liveness endpoint (the operator takes no --host/--port)."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmservice.sandbox.product import Product
from llmservice.sandbox.runtime.workloads import (
    COMPONENT_LABEL,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    WORKLOADS,
    PodLaunch,
    component_of,
)
from tests.unit.deploy.test_manifests import operator_container, operator_pod

PRODUCT = Product(Path("/cache/product/0123/venv/bin/python"))


def launch(component: str, args: list[str], port: int) -> list[str]:
    pod = PodLaunch("ns", "pod-1", component, "127.100.0.7", port, args, PRODUCT)
    return WORKLOADS[component].command(pod)


def test_operator_pod_becomes_the_operator_command() -> None:
    container = operator_container()
    port = container["ports"][0]["containerPort"]
    argv = launch("operator", container["args"], port)
    # The installed product's interpreter, never the one running the tests.
    assert argv[:5] == [str(PRODUCT.python), "-P", "-m", "llmservice.cli", "operator"]
    assert argv[-4:] == ["--liveness-host", "127.100.0.7", "--liveness-port", str(port)]
    assert "--host" not in argv
    assert "--port" not in argv
    assert argv.count("operator") == 1


def test_operator_default_port_is_the_liveness_port() -> None:
    assert WORKLOADS["operator"].default_port == 8081


@pytest.mark.parametrize(
    ("labels", "component"),
    [
        ({MANAGED_BY_LABEL: MANAGED_BY, COMPONENT_LABEL: "engine"}, "engine"),
        ({MANAGED_BY_LABEL: MANAGED_BY, COMPONENT_LABEL: "router"}, "router"),
        # An engine or router Pod the operator did not render gets no process.
        ({COMPONENT_LABEL: "engine"}, None),
        # The operator Pod is recognized by its name label, not managed-by.
        ({COMPONENT_LABEL: "operator"}, None),
        ({MANAGED_BY_LABEL: MANAGED_BY, COMPONENT_LABEL: "operator"}, None),
        ({MANAGED_BY_LABEL: MANAGED_BY, COMPONENT_LABEL: "database"}, None),
        ({}, None),
        (None, None),
    ],
)
def test_component_of(labels: dict[str, str] | None, component: str | None) -> None:
    assert component_of(labels) == component


def test_deploy_operator_pod_is_selected() -> None:
    assert component_of(operator_pod()["metadata"]["labels"]) == "operator"


def test_engine_and_router_keep_host_and_port() -> None:
    assert launch("engine", [], 8000)[-4:] == ["--host", "127.100.0.7", "--port", "8000"]
    assert launch("router", ["router", "--x"], 8080)[4:6] == ["router", "--x"]


@pytest.mark.parametrize("component", ["engine", "router", "operator"])
def test_every_llmservice_pod_runs_the_installed_product(component: str) -> None:
    assert launch(component, [], 8000)[:4] == [str(PRODUCT.python), "-P", "-m", "llmservice.cli"]
