"""Waiting for a CustomResourceDefinition to be served."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from tests.e2e.waiting import eventually


def wait_established(kube: client.ApiClient, name: str, timeout: float = 60) -> None:
    """Until the CRD's Established condition is True: before that, its kind is not served."""
    extensions = client.ApiextensionsV1Api(kube)

    def established() -> bool:
        crd: Any = extensions.read_custom_resource_definition(name)
        return any(
            c.type == "Established" and c.status == "True" for c in crd.status.conditions or []
        )

    eventually(established, timeout=timeout, what=f"CRD {name} to be Established")
