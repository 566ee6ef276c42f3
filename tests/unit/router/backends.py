"""Engine stand-ins for router tests, each on a real loopback socket.

`FakeBackend` speaks just enough HTTP/1.1 (keep-alive, Content-Length bodies) and behaves
as told: answer JSON, stream SSE slowly, stall before the headers, die mid-stream, close
before answering, or answer with an error status. It records every request (path,
headers, body) and when a client connection went away, so a test can see that the router
cancelled upstream work.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import TracebackType


class Mode(enum.Enum):
    JSON = "json"  # a chat completion with usage
    STREAM = "stream"  # SSE events every `delay` seconds, `chunks` of them, then [DONE]
    STALL = "stall"  # read the request, never answer
    DIE_MID_STREAM = "die"  # headers and `chunks` events, then close the connection
    CLOSE = "close"  # read the request, close without a byte
    STATUS = "status"  # answer `status` with an OpenAI-style error body
    RESET = "reset"  # read the request, reset the connection (RST) without a byte
    CLOSE_REUSED = "close-reused"  # answer JSON on a new connection; close a reused one


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)  # when it arrived

    def json(self) -> dict[str, object]:
        value = json.loads(self.body)
        assert isinstance(value, dict)
        return value


@dataclass
class FakeBackend:
    """A scripted engine. `async with FakeBackend(Mode.JSON) as backend: backend.url`."""

    mode: Mode = Mode.JSON
    chunks: int = 5
    delay: float = 0.0
    status: int = 500
    name: str = "fake"
    requests: list[Received] = field(default_factory=list)
    disconnects: list[float] = field(default_factory=list)
    stream_started: asyncio.Event = field(default_factory=asyncio.Event)
    # Requests being answered now, and the most there ever were at once.
    active: int = 0
    peak: int = 0
    connections: int = 0  # connections accepted
    _server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> FakeBackend:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()

    async def _read_request(self, reader: asyncio.StreamReader) -> Received | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        return Received(method, path, headers, body)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        self.connections += 1
        served = 0
        try:
            while True:
                request = await self._read_request(reader)
                if request is None:
                    return
                self.requests.append(request)
                served += 1
                if self.mode is Mode.CLOSE_REUSED and served > 1:
                    return  # as an engine closing an idle connection while a request arrives
                self.active += 1
                self.peak = max(self.peak, self.active)
                try:
                    answered = await self._answer(request, reader, writer)
                finally:
                    self.active -= 1
                if not answered:
                    return
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _watch_close(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(ConnectionError):
            await reader.read()  # returns b"" when the peer closes
        self.disconnects.append(time.monotonic())

    async def _answer(
        self, request: Received, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Answer one request; False when the connection is done."""
        mode = self.mode
        if mode is Mode.RESET:
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport = writer.transport
            assert isinstance(transport, asyncio.Transport)
            transport.abort()
            return False
        if mode in (Mode.JSON, Mode.CLOSE_REUSED):
            body = json.dumps(
                {
                    "id": "cmpl-1",
                    "object": "chat.completion",
                    "model": json.loads(request.body or b"{}").get("model"),
                    "backend": self.name,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
                    "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
                }
            ).encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                b"connection: keep-alive\r\nkeep-alive: timeout=5\r\nx-backend: "
                + self.name.encode()
                + b"\r\ncontent-length: "
                + str(len(body)).encode()
                + b"\r\n\r\n"
                + body
            )
            await writer.drain()
            return True
        if mode is Mode.STATUS:
            body = json.dumps({"error": {"message": "engine failed", "type": "server"}}).encode()
            writer.write(
                f"HTTP/1.1 {self.status} Oops\r\ncontent-type: application/json\r\n"
                f"content-length: {len(body)}\r\n\r\n".encode()
                + body
            )
            await writer.drain()
            return True
        if mode is Mode.STALL:
            await self._watch_close(reader)
            return False
        if mode is Mode.CLOSE:
            return False
        # STREAM and DIE_MID_STREAM: chunked SSE
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        await writer.drain()
        self.stream_started.set()
        closed = asyncio.ensure_future(self._watch_close(reader))
        try:
            for i in range(self.chunks):
                if closed.done():
                    return False
                event = {"choices": [{"index": 0, "delta": {"content": f"t{i} "}}]}
                data = b"data: " + json.dumps(event).encode() + b"\n\n"
                writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                await writer.drain()
                if self.delay:
                    await asyncio.wait([closed], timeout=self.delay)
            if mode is Mode.DIE_MID_STREAM:
                transport = writer.transport
                assert isinstance(transport, asyncio.Transport)
                transport.abort()
                return False
            usage = b'data: {"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":5}}\n\n'
            for data in (usage, b"data: [DONE]\n\n"):
                writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        finally:
            closed.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await closed
        return True


def refusing_url() -> str:
    """A loopback URL where nothing listens: connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def blackhole_url() -> Iterator[str]:
    """A loopback URL whose connects hang: a listener that never accepts, its queue full.

    Linux drops a SYN when the listener's accept queue is full, so a connect there waits
    for the connect timeout instead of being refused.
    """
    with contextlib.ExitStack() as stack:
        listener = stack.enter_context(socket.socket())
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(4):  # fill the accept queue; later connects then hang
            filler = stack.enter_context(socket.socket())
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
        yield f"http://127.0.0.1:{port}"
