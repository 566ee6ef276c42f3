"""Serving a simulator with uvicorn (httptools), from the CLI or inside a test.

`SimServer` binds its own socket first, so port 0 works and the real port is known before
the first request. Use it in an event loop (`async with SimServer(config) as sim`) or from
synchronous code on a background thread with its own uvloop loop (`with SimServer(config)
as sim`). Either way `sim.url` is the base URL and `sim.app` the live `SimApp`
(`sim.app.engine`, `sim.app.metrics`).
"""

from __future__ import annotations

import asyncio
import socket
import threading
from types import TracebackType

import uvicorn
import uvloop

from llmservice.sim.app import SimApp, create_app
from llmservice.sim.config import SimConfig

__all__ = ["SimServer", "bind_socket", "uvicorn_server"]

GRACEFUL_SHUTDOWN_SECONDS = 5
_START_TIMEOUT_SECONDS = 30.0


def bind_socket(host: str, port: int) -> socket.socket:
    """A bound (not yet listening) TCP socket; port 0 picks a free port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def uvicorn_server(app: SimApp, *, access_log: bool = False) -> uvicorn.Server:
    config = uvicorn.Config(
        app,
        http="httptools",
        loop="none",
        lifespan="on",
        log_config=None,
        access_log=access_log,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        timeout_keep_alive=30,
    )
    return uvicorn.Server(config)


class SimServer:
    """One simulator on a loopback socket; an async or a sync context manager."""

    def __init__(
        self, config: SimConfig | None = None, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.config = config or SimConfig()
        self.host = host
        self.app = create_app(self.config)
        self._sock = bind_socket(host, port)
        self.port: int = self._sock.getsockname()[1]
        self._server = uvicorn_server(self.app, access_log=self.config.access_log)
        self._task: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread_error: BaseException | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    # In the caller's event loop.

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._server.serve(sockets=[self._sock])
        )
        deadline = asyncio.get_running_loop().time() + _START_TIMEOUT_SECONDS
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise RuntimeError("the simulator stopped while starting")
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("the simulator did not start")
            await asyncio.sleep(0.005)

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            await self._task
            self._task = None
        self._sock.close()

    async def __aenter__(self) -> SimServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # On a background thread.

    def _thread_main(self, ready: threading.Event) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            try:
                await self.start()
            finally:
                ready.set()
            if self._task is not None:
                await self._task

        try:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                runner.run(main())
        except BaseException as exc:
            self._thread_error = exc
            ready.set()

    def __enter__(self) -> SimServer:
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._thread_main, args=(ready,), name=f"sim-{self.port}", daemon=True
        )
        self._thread.start()
        if not ready.wait(_START_TIMEOUT_SECONDS):
            raise TimeoutError("the simulator did not start")
        if self._thread_error is not None:
            raise RuntimeError("the simulator failed to start") from self._thread_error
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        def request_exit() -> None:
            self._server.should_exit = True

        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(request_exit)
        if self._thread is not None:
            self._thread.join(GRACEFUL_SHUTDOWN_SECONDS + 10)
        self._sock.close()
