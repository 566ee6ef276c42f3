"""The router's server lifecycle: listen, drain on SIGTERM, finish what is in flight, exit.

On SIGTERM the router fails /readyz at once, keeps serving for ``drain_delay`` seconds so
the Service stops sending it traffic, then stops accepting connections and lets requests and
streams in flight finish for up to ``grace_period`` seconds before it exits. A second
SIGTERM, or a SIGINT, skips the delay. ``grace_period`` plus ``drain_delay`` should fit in
the Pod's terminationGracePeriodSeconds.

Client connections are bounded by the app's `ClientLimits` (header count and size, header
and keep-alive timeouts, open connections), enforced by the protocol class of
`llmservice.router.http_limits`; `server_config` is the one place uvicorn is configured.
"""

from __future__ import annotations

import gc
import signal
import time
from types import FrameType

import uvicorn

from llmservice.router.app import RouterApp
from llmservice.router.http_limits import bounded_protocol

__all__ = ["GC_THRESHOLD", "DrainingServer", "serve", "server_config"]

GC_THRESHOLD = 20_000


class DrainingServer(uvicorn.Server):
    """uvicorn, with a drain phase between SIGTERM and closing the listener."""

    def __init__(self, config: uvicorn.Config, app: RouterApp, drain_delay: float) -> None:
        super().__init__(config)
        self.app = app
        self.drain_delay = drain_delay
        self.drain_started: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.drain_started is None and sig == signal.SIGTERM and self.drain_delay > 0:
            self.app.begin_drain()
            self.drain_started = time.monotonic()
            return
        self.app.begin_drain()
        if self.should_exit:
            self.force_exit = True
        self.should_exit = True

    async def on_tick(self, counter: int) -> bool:
        started = self.drain_started
        if started is not None and time.monotonic() - started >= self.drain_delay:
            self.should_exit = True
        return await super().on_tick(counter)


def server_config(
    app: RouterApp,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    log_level: str = "info",
    grace_period: float = 60.0,
    loop: str = "uvloop",
) -> uvicorn.Config:
    """uvicorn's configuration for `app`: httptools within the app's client limits."""
    limits = app.config.client_limits
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        loop=loop,
        http=bounded_protocol(limits),
        # Said, not detected: the app's __call__ is a plain function returning a coroutine.
        interface="asgi3",
        lifespan="on",
        access_log=False,
        log_config=None,
        log_level=log_level,
        proxy_headers=False,
        timeout_graceful_shutdown=int(grace_period),
        server_header=False,
        # The keep-alive timeout is the protocol's own (a float); this is uvicorn's copy.
        timeout_keep_alive=int(limits.keep_alive_timeout),
    )


def serve(
    app: RouterApp,
    *,
    host: str,
    port: int,
    log_level: str,
    drain_delay: float,
    grace_period: float,
) -> None:
    """Serve `app` until a signal stops it, draining first (see the module docstring)."""
    config = server_config(
        app, host=host, port=port, log_level=log_level, grace_period=grace_period
    )
    server = DrainingServer(config, app, drain_delay)
    # Requests allocate many short-lived containers; collecting the young generation less
    # often, with everything loaded at startup frozen out of the scans, saves CPU per request.
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, 20, 50)
    server.run()
