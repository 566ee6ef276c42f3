"""One sandbox for the whole e2e session, started by the same code as `sandbox up`.

The binaries must already be built (`llmservice sandbox build`, which `make test-e2e` and
CI run first): building inside a test would blow every timeout. The sandbox gets its own
directory and its own loopback Pod range, so it never collides with a developer's sandbox.

Its Pods run the installed product: this checkout's wheel in a virtualenv without extras
(cached by the wheel's hash), which the packaging test checks command by command.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from llmservice.sandbox.apiclient import api_client
from llmservice.sandbox.cluster import Sandbox
from llmservice.sandbox.errors import SandboxError
from llmservice.sandbox.layout import Settings
from llmservice.sandbox.product import Product, ensure_product
from llmservice.sandbox.progress import Progress
from llmservice.sandbox.versions import default_layout
from tests.e2e.addresses import fresh_pod_cidr
from tests.e2e.llmservice_crd import llmservice_crd  # noqa: F401 - a fixture, shared here

E2E_POD_CIDR = fresh_pod_cidr()


@pytest.fixture(scope="session")
def product() -> Product:
    """llmservice as it ships: its wheel installed without extras, built once per session."""
    try:
        return ensure_product(Progress())
    except SandboxError as exc:
        pytest.fail(f"the llmservice wheel could not be built or installed: {exc}")


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory, product: Product) -> Iterator[Sandbox]:
    binaries = default_layout()
    missing = binaries.missing()
    if missing:
        pytest.fail(f"sandbox binaries missing ({missing[0]}): run `llmservice sandbox build`")
    directory = tmp_path_factory.mktemp("sandbox")
    settings = Settings(pod_cidr=E2E_POD_CIDR)
    instance = Sandbox(directory, settings, binaries, Progress(), product)
    try:
        instance.up()
    except SandboxError as exc:
        pytest.fail(f"sandbox did not start: {exc}")
    yield instance
    instance.down()


@pytest.fixture(scope="session")
def kube(sandbox: Sandbox) -> Iterator[client.ApiClient]:
    with api_client(sandbox.kubeconfig) as api:
        yield api


@pytest.fixture
def core(kube: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(kube)


@pytest.fixture
def apps(kube: client.ApiClient) -> client.AppsV1Api:
    return client.AppsV1Api(kube)


@pytest.fixture
def custom(kube: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(kube)


@pytest.fixture
def namespace(core: client.CoreV1Api) -> Iterator[str]:
    """A fresh namespace per test, so tests never see each other's objects."""
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]
