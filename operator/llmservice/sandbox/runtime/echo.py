"""A tiny HTTP server for a Pod: proves address, identity and credentials end to end.

`GET /` (and any other path) answers with the Pod it serves; `GET /health` is 200 for
probes; `GET /whoami` asks the API server who the process is, with the kubeconfig the
runtime wrote for the Pod, so a test sees the Pod's ServiceAccount, not admin.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any


def whoami() -> dict[str, Any]:
    from pathlib import Path

    from kubernetes import client

    from llmservice.sandbox.apiclient import api_client

    with api_client(Path(os.environ["KUBECONFIG"])) as api:
        review: Any = client.AuthenticationV1Api(api).create_self_subject_review(
            client.V1SelfSubjectReview()
        )
        info = review.status.user_info
        return {"username": info.username, "groups": info.groups or []}


def make_handler(identity: dict[str, str]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body: dict[str, Any] = dict(identity)
            if self.path == "/whoami":
                body |= whoami()
            payload = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="llmservice-sandbox-echo")
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pod", required=True)
    parser.add_argument("--component", required=True)
    args = parser.parse_args(argv)
    identity = {"pod": args.pod, "component": args.component, "address": f"{args.host}:{args.port}"}
    server = ThreadingHTTPServer((args.host, args.port), make_handler(identity))

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
