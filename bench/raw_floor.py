"""The floor without ASGI: the router's stack with the request handled by the connection itself.

`asgi_floor.py` is the least a request can cost on the router's stack as it is (uvicorn's
protocol, ASGI, the app). This one keeps the parts below ASGI (uvloop, httptools, the
router's upstream `Pool`, the same garbage collector settings) and drops uvicorn and ASGI:
the connection's own protocol parses the request, forwards the body to the one backend and
writes the answer itself, a non-streamed one as one write with its ``Content-Length``, a
streamed one part by part in chunked framing. The difference between the two floors is
what uvicorn's protocol and the ASGI messages cost a request; this floor is how low a
router that went past them could go.

It is a measuring stick, not a server: no limits, no timeouts, no flow control beyond
reading one request of a connection at a time, no ``Expect: 100-continue``; every request
but a GET is forwarded to the backend's /v1/chat/completions, a GET answers ``ok``.

    python -m bench.raw_floor --port 18003 --backend-port 18001
"""

from __future__ import annotations

import asyncio
from typing import cast

import httptools
import uvloop
from bench.asgi_floor import floor_setup

from llmservice.router.upstream import Pool

HEAD = b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json"
# The backend's own framing headers: this floor frames the answer again.
FRAMING = {b"connection", b"keep-alive", b"transfer-encoding", b"content-length"}
OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
END = b"0\r\n\r\n"


class RawFloor(asyncio.Protocol):
    """One client connection: a request at a time, forwarded and answered."""

    def __init__(self, pool: Pool, backend_port: int, loop: asyncio.AbstractEventLoop) -> None:
        self.pool = pool
        self.backend_port = backend_port
        self.loop = loop
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.body = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's, not a subclass

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.close()

    def on_message_begin(self) -> None:
        self.body = b""

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        assert self.transport is not None
        if self.parser.get_method() == b"GET":
            self.transport.write(OK)
            return
        # One request at a time: the next is read once this one is answered.
        self.transport.pause_reading()
        self.loop.create_task(self.forward(self.body))

    async def forward(self, body: bytes) -> None:
        transport = self.transport
        assert transport is not None
        response = await self.pool.request("127.0.0.1", self.backend_port, HEAD, body)
        try:
            lines = [b"HTTP/1.1 %d \r\n" % response.status]  # no reason phrase: allowed
            for name, value in response.headers:
                if name not in FRAMING:
                    lines.append(name + b": " + value + b"\r\n")
            if response.header(b"content-length") is not None:
                parts = []
                while chunk := await response.read_chunk():
                    parts.append(chunk)
                payload = b"".join(parts)
                lines.append(b"content-length: %d\r\n\r\n" % len(payload))
                transport.writelines((b"".join(lines), payload))
            else:
                lines.append(b"transfer-encoding: chunked\r\n\r\n")
                transport.write(b"".join(lines))
                while chunk := await response.read_chunk():
                    transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
                transport.write(END)
        finally:
            response.close()
        if not transport.is_closing():
            transport.resume_reading()


async def serve(port: int, backend_port: int) -> None:
    loop = asyncio.get_running_loop()
    async with Pool(limit=1000, connect_timeout=5.0) as pool:
        server = await loop.create_server(
            lambda: RawFloor(pool, backend_port, loop), "127.0.0.1", port
        )
        async with server:
            await server.serve_forever()


def main() -> None:
    args = floor_setup(__doc__)
    uvloop.run(serve(args.port, args.backend_port))


if __name__ == "__main__":
    main()
