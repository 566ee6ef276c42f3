"""The floor of the router's CPU per request: an ASGI proxy with nothing but the forwarding.

It runs on the router's own stack (uvicorn with httptools on uvloop, the router's upstream
`Pool`, the same garbage collector settings) and does only what any proxy must: read the
body, send it to the one backend, relay the answer. No routing, admission, limits,
timeouts, metrics, access log or usage counting. `router_bench.py --floor` measures it as
one more target: the difference between the router and this floor is what the router's
features cost per request, and the floor says how low the router could go on this stack.

    python -m bench.asgi_floor --port 18002 --backend-port 18001
"""

from __future__ import annotations

import argparse
import gc
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import uvicorn

from llmservice.router.server import GC_THRESHOLD
from llmservice.router.upstream import Pool

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

HEAD = b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json"
# Hop-by-hop headers of the backend's answer, not relayed (uvicorn frames the answer).
HOP_BY_HOP = {b"connection", b"keep-alive", b"transfer-encoding"}


class FloorApp:
    """Forwards every POST to the backend on ``backend_port``; ``GET /readyz`` answers ok."""

    def __init__(self, backend_port: int) -> None:
        self.backend_port = backend_port
        self.pool: Pool | None = None

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["method"] == "GET":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})
        else:
            await self._forward(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.pool = Pool(limit=1000, connect_timeout=5.0)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.pool is not None:
                    await self.pool.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _forward(self, receive: Receive, send: Send) -> None:
        assert self.pool is not None, "served only after the lifespan startup"
        parts = []
        while True:  # the whole body, as the router reads it
            message = await receive()
            parts.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        response = await self.pool.request("127.0.0.1", self.backend_port, HEAD, b"".join(parts))
        try:
            headers = [(name, value) for name, value in response.headers if name not in HOP_BY_HOP]
            start = {"type": "http.response.start", "status": response.status, "headers": headers}
            await send(start)
            while chunk := await response.read_chunk():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            response.close()


def floor_setup(description: str | None) -> argparse.Namespace:
    """A floor's command line (``--port``, ``--backend-port``), and the router's garbage
    collector settings."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--backend-port", type=int, required=True)
    args = parser.parse_args()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, 20, 50)  # as the router's `serve` sets it
    return args


def main() -> None:
    args = floor_setup(__doc__)
    uvicorn.run(
        FloorApp(args.backend_port),
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        interface="asgi3",
        lifespan="on",
        access_log=False,
        log_level="warning",
        server_header=False,
    )


if __name__ == "__main__":
    main()
