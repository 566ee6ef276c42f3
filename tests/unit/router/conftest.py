"""Running a router app on a real loopback socket inside the test's own event loop."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import replace
from types import TracebackType
from typing import Any, TypeVar

import httptools
import uvicorn
import uvloop

from llmservice.router import (
    AccessLog,
    DiscoveryConfig,
    Replica,
    RouterApp,
    RouterConfig,
    StaticDiscovery,
    create_app,
)
from llmservice.router.discovery import Listener
from llmservice.router.server import server_config

T = TypeVar("T")

TEST_TIMEOUT = 60.0


def run(coro: Coroutine[Any, Any, T], timeout: float = TEST_TIMEOUT) -> T:
    """Run one test scenario on a fresh uvloop loop, bounded in time."""

    async def bounded() -> T:
        async with asyncio.timeout(timeout):
            return await coro

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(bounded())


@contextlib.asynccontextmanager
async def reset_at_exit(
    port: int,
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """A client connection to 127.0.0.1:``port`` that is reset when the block ends.

    For a client that stops reading while the router still has an answer for it: uvloop's
    loop does not close while a transport holds buffered writes, so a test that failed
    there would hang when its loop closes instead of failing. A reset ends both sides.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield reader, writer
    finally:
        writer.transport.abort()


async def scripted_engine(
    handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> tuple[asyncio.Server, str]:
    """An engine that answers each connection with ``handler``, and its base URL (for the
    answers `backends.FakeBackend` has no mode for)."""
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


def config(*backends: str, **changes: Any) -> RouterConfig:
    base = RouterConfig(
        served_model_name="llama",
        aliases=("gpt-3.5-turbo",),
        discovery=DiscoveryConfig(static_backends=backends or ("http://127.0.0.1:9",)),
    )
    return replace(base, **changes)


class MutableDiscovery:
    """Discovery whose replica set a test changes at will."""

    def __init__(self, urls: list[str], *, synced: bool = True) -> None:
        self._replicas = {url: Replica(url, url) for url in urls}
        self._listener: Listener | None = None
        self._synced = synced

    @property
    def synced(self) -> bool:
        return self._synced

    async def start(self, listener: Listener) -> None:
        self._listener = listener
        listener(dict(self._replicas))

    async def stop(self) -> None:
        self._listener = None

    def set(self, urls: list[str]) -> None:
        self._replicas = {url: Replica(url, url) for url in urls}
        self._synced = True
        if self._listener is not None:
            self._listener(dict(self._replicas))


class RouterServer:
    """A router app served by uvicorn on 127.0.0.1:<free port> in the running loop."""

    def __init__(
        self,
        cfg: RouterConfig,
        *,
        discovery: Any = None,
        api_keys: Any = None,
        api_keys_file: Any = None,
        plain_server: bool = False,
        balancer: Any = None,
    ) -> None:
        """``plain_server``: uvicorn's own protocol instead of the router's (the app then
        finds no `llmservice.router.client_connection` and keeps to plain ASGI)."""
        self._log = io.StringIO()
        self.app: RouterApp = create_app(
            cfg,
            discovery=discovery or StaticDiscovery(cfg.discovery.static_backends),
            access_log=AccessLog(self._log),
            api_keys=api_keys,
            api_keys_file=api_keys_file,
            balancer=balancer,
        )
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        # The router's own uvicorn configuration (its protocol and client limits).
        server = server_config(self.app, grace_period=5, loop="none")
        if plain_server:
            server.http = "httptools"
        self._server = uvicorn.Server(server)
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> io.StringIO:
        """The access log so far (the lines the app still holds written out first)."""
        self.app.access_log.flush()
        return self._log

    def log_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.getvalue().splitlines()]

    async def __aenter__(self) -> RouterServer:
        self._task = asyncio.create_task(self._server.serve(sockets=[self._sock]))
        await until(lambda: self._server.started or self._task is None or self._task.done())
        if self._task.done():
            self._task.result()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.should_exit = True
        if self._task is not None:
            await self._task
        self._sock.close()


async def until(
    condition: Callable[[], bool | Awaitable[bool]], within: float = 20.0, step: float = 0.01
) -> None:
    """Poll ``condition`` until it holds; fail after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(step)


CHAT = {"model": "llama", "messages": [{"role": "user", "content": "hello"}]}


async def until_stalled(count: Callable[[], int], quiet: float = 0.25) -> None:
    """Wait until ``count`` is positive and has not changed for ``quiet`` seconds (a writer
    held back by full buffers)."""
    loop = asyncio.get_running_loop()
    seen = [-1, 0.0]

    def stalled() -> bool:
        value = count()
        if value != seen[0]:
            seen[0], seen[1] = value, loop.time()
        return value > 0 and loop.time() - seen[1] > quiet

    await until(stalled)


class Answers:
    """A strict HTTP/1.1 parser of the router's answers on one connection; ``raw`` keeps
    every byte read, for a test of the framing itself."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.bodies: list[bytearray] = []
        self.complete = 0
        self.raw = bytearray()

    def on_message_begin(self) -> None:
        self.bodies.append(bytearray())

    def on_body(self, body: bytes) -> None:
        self.bodies[-1] += body

    def on_message_complete(self) -> None:
        self.complete += 1

    async def read(self, reader: asyncio.StreamReader, answers: int) -> None:
        """Read until ``answers`` answers are complete; fails if the connection closes."""
        while self.complete < answers:
            data = await reader.read(1 << 16)
            assert data, "the router closed the connection"
            self.raw += data
            self.parser.feed_data(data)

    async def read_to_close(self, reader: asyncio.StreamReader) -> None:
        """Read until the router closes the connection."""
        while data := await reader.read(1 << 16):
            self.raw += data
            self.parser.feed_data(data)
