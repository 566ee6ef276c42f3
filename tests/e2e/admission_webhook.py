"""A validating admission webhook refusing Ingress hosts under blocked.example.

A webhook may answer with a full Status: code 422, reason Invalid and
`details.causes[].field`, which the API server hands back to the client as it does its own
validation errors. The webhook runs in the test, on loopback, serving with the sandbox's
certificate (valid for 127.0.0.1, signed by the CA the API server is given here).
"""

from __future__ import annotations

import base64
import json
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from kubernetes import client

from llmservice.sandbox.pki import Pki
from tests.e2e.blocked_hosts import (
    HOST_FIELD,
    INGRESS_WRITES,
    NAMESPACE_LABEL,
    REFUSAL,
    is_blocked,
    wait_enforced,
)


def _first_host(ingress: dict[str, Any]) -> str:
    rules = (ingress.get("spec") or {}).get("rules") or [{}]
    return str(rules[0].get("host") or "")


def _review_answer(review: dict[str, Any]) -> dict[str, Any]:
    """The AdmissionReview response: a 422 naming the host field when it is blocked."""
    request = review["request"]
    response: dict[str, Any] = {"uid": request["uid"], "allowed": True}
    if is_blocked(_first_host(request.get("object") or {})):
        cause = {"reason": "FieldValueForbidden", "field": HOST_FIELD, "message": REFUSAL}
        response["allowed"] = False
        response["status"] = {
            "status": "Failure",
            "code": 422,
            "reason": "Invalid",
            "message": REFUSAL,
            "details": {"causes": [cause]},
        }
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        answer = json.dumps(_review_answer(json.loads(self.rfile.read(length)))).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a line per admission request would bury what the test prints."""


@contextmanager
def _serving(keys: Pki) -> Iterator[int]:
    """The webhook, over TLS on a free loopback port (yielded) until exit."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(keys.admin_cert, keys.admin_key)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, name="admission-webhook", daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _configuration(name: str, namespace: str, port: int, keys: Pki) -> dict[str, Any]:
    webhook = {
        "name": "blocked-hosts.e2e.llmservice.dev",
        "clientConfig": {
            "url": f"https://127.0.0.1:{port}/validate",
            "caBundle": base64.b64encode(keys.ca_cert.read_bytes()).decode(),
        },
        "rules": [INGRESS_WRITES],
        "namespaceSelector": {"matchLabels": {NAMESPACE_LABEL: namespace}},
        "failurePolicy": "Fail",
        "sideEffects": "None",  # so dry runs are sent to it too
        "admissionReviewVersions": ["v1"],
        "timeoutSeconds": 5,
    }
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [webhook],
    }


@contextmanager
def webhook_blocking_hosts(
    kube: client.ApiClient, keys: Pki, namespace: str, name: str
) -> Iterator[client.ApiException]:
    """The webhook `name`, for `namespace`, until exit; yields the probe's refusal."""
    admission = client.AdmissionregistrationV1Api(kube)
    with _serving(keys) as port:
        admission.create_validating_webhook_configuration(
            _configuration(name, namespace, port, keys)
        )
        try:
            yield wait_enforced(kube, namespace, f"the webhook {name}")
        finally:
            admission.delete_validating_webhook_configuration(name)
