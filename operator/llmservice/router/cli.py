"""``llmservice router``: run the session-affinity router.

The operator renders these arguments into the router Deployment; they are the router's
whole configuration (defaults in `llmservice.router.config`)::

    llmservice router
      --served-model-name NAME           the model name the engine serves (required)
      --alias NAME                       another accepted model name (repeatable)
      --host 0.0.0.0  --port 8080        where to listen
      # replicas: either watch the engine Pods ...
      --namespace NS                     default: the Pod's own namespace
      --selector 'app.kubernetes.io/instance=X,app.kubernetes.io/component=engine'
      --engine-port 8000
      # ... or a fixed list (tests, benchmarks)
      --static-backends http://127.0.0.1:8001,http://127.0.0.1:8002   (plain http only)
      # routing
      --strategy session|least-load|round-robin    default session (CHWBL)
      --session-header X-Session-ID
      --load-bound 1.25                  CHWBL bound, as a multiple of the mean load
      --prefix-chars 512                 prompt prefix hashed when there is no session
      # upstream
      --connect-timeout 5  --first-byte-timeout 300  --idle-timeout 120  --total-timeout 1800
      --retries 2                        retries before the first byte, per request
      --retry-budget 0.2                 retries as a fraction of recent requests
      --max-body-bytes 16777216
      --max-connections 1024             upstream connection pool size
      --forward-authorization            pass the client's Authorization header upstream
      --api-keys-file PATH               mounted API-key Secret (accepted, not yet enforced)
      # lifecycle
      --drain-delay 5                    after SIGTERM: /readyz fails, traffic still served
      --grace-period 60                  then in-flight requests get this long to finish
      --no-access-log                    do not write the per-request JSON line
      --log-level info                   debug | info | warning | error

On SIGTERM the router fails /readyz at once, keeps serving for ``--drain-delay`` seconds so
the Service stops sending it traffic, then stops accepting connections and lets requests and
streams in flight finish for up to ``--grace-period`` seconds before it exits with 0. A
second SIGTERM or SIGINT skips the delay. ``--grace-period`` plus ``--drain-delay`` should
fit in the Pod's terminationGracePeriodSeconds.
"""

from __future__ import annotations

import argparse
import gc
import logging
import signal
import sys
import time
from types import FrameType

import uvicorn

from llmservice.logs import JsonFormatter
from llmservice.router import config as defaults
from llmservice.router.accesslog import AccessLog
from llmservice.router.app import RouterApp, create_app
from llmservice.router.auth import load_api_keys
from llmservice.router.config import (
    BalancerConfig,
    DiscoveryConfig,
    RetryPolicy,
    RouterConfig,
    Strategy,
    Timeouts,
)
from llmservice.router.discovery import (
    Discovery,
    KubernetesDiscovery,
    StaticDiscovery,
    load_api_server,
)

GC_THRESHOLD = 20_000

__all__ = ["DrainingServer", "JsonFormatter", "build_config", "main", "parser"]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="llmservice router",
        description="OpenAI-compatible, session-affinity router in front of engine replicas.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--served-model-name", required=True, help="the model name the engine serves")
    p.add_argument("--alias", action="append", default=[], help="extra model name (repeatable)")
    p.add_argument("--host", default=defaults.DEFAULT_HOST, help="address to listen on")
    p.add_argument("--port", type=int, default=defaults.DEFAULT_PORT, help="port to listen on")
    p.add_argument(
        "--namespace",
        default=None,
        help="namespace of the engine Pods; None means the router Pod's own",
    )
    p.add_argument("--selector", default="", help="label selector of the engine Pods")
    p.add_argument(
        "--engine-port",
        type=int,
        default=defaults.DEFAULT_ENGINE_PORT,
        help="port of the engine on each Pod",
    )
    p.add_argument(
        "--static-backends",
        default="",
        help="comma-separated http://host:port engines, instead of watching Pods",
    )
    p.add_argument(
        "--strategy",
        choices=[s.value for s in Strategy],
        default=Strategy.SESSION.value,
        help="how a replica is picked",
    )
    p.add_argument(
        "--session-header",
        default=defaults.DEFAULT_SESSION_HEADER,
        help="request header carrying the session id",
    )
    p.add_argument(
        "--load-bound",
        type=float,
        default=defaults.DEFAULT_LOAD_BOUND,
        help="CHWBL bound, as a multiple of the mean load",
    )
    p.add_argument(
        "--prefix-chars",
        type=int,
        default=defaults.DEFAULT_PREFIX_CHARS,
        help="prompt prefix hashed when there is no session",
    )
    p.add_argument(
        "--connect-timeout",
        type=float,
        default=defaults.DEFAULT_CONNECT_TIMEOUT,
        help="seconds to connect to an engine",
    )
    p.add_argument(
        "--first-byte-timeout",
        type=float,
        default=defaults.DEFAULT_FIRST_BYTE_TIMEOUT,
        help="seconds until the response headers",
    )
    p.add_argument(
        "--idle-timeout",
        type=float,
        default=defaults.DEFAULT_IDLE_TIMEOUT,
        help="seconds between two body chunks",
    )
    p.add_argument(
        "--total-timeout",
        type=float,
        default=defaults.DEFAULT_TOTAL_TIMEOUT,
        help="seconds for the whole exchange",
    )
    p.add_argument(
        "--retries",
        type=int,
        default=defaults.DEFAULT_RETRIES,
        help="retries on another replica, before the first byte only",
    )
    p.add_argument(
        "--retry-budget",
        type=float,
        default=defaults.DEFAULT_RETRY_BUDGET_RATIO,
        help="retries as a fraction of recent requests",
    )
    p.add_argument(
        "--max-body-bytes",
        type=int,
        default=defaults.DEFAULT_MAX_BODY_BYTES,
        help="largest accepted request body",
    )
    p.add_argument(
        "--max-connections",
        type=int,
        default=defaults.DEFAULT_MAX_CONNECTIONS,
        help="upstream connections, at most",
    )
    p.add_argument(
        "--forward-authorization",
        action="store_true",
        help="pass the client's Authorization header upstream",
    )
    p.add_argument(
        "--api-keys-file", default=None, help="API keys file (accepted; keys are not enforced yet)"
    )
    p.add_argument(
        "--drain-delay",
        type=float,
        default=defaults.DEFAULT_DRAIN_DELAY,
        help="seconds /readyz fails after SIGTERM before the listener closes",
    )
    p.add_argument(
        "--grace-period",
        type=float,
        default=defaults.DEFAULT_GRACE_PERIOD,
        help="seconds requests in flight get to finish",
    )
    p.add_argument(
        "--no-access-log", action="store_true", help="do not write a JSON line per request"
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return p


def build_config(args: argparse.Namespace) -> RouterConfig:
    """The `RouterConfig` for parsed arguments; raises ValueError when they are inconsistent."""
    static = tuple(url.strip() for url in args.static_backends.split(",") if url.strip())
    return RouterConfig(
        served_model_name=args.served_model_name,
        aliases=tuple(args.alias),
        discovery=DiscoveryConfig(
            static_backends=static,
            namespace=args.namespace,
            selector=args.selector,
            engine_port=args.engine_port,
        ),
        session_header=args.session_header,
        balancer=BalancerConfig(
            strategy=Strategy(args.strategy),
            load_bound=args.load_bound,
            prefix_chars=args.prefix_chars,
        ),
        timeouts=Timeouts(
            connect=args.connect_timeout,
            first_byte=args.first_byte_timeout,
            idle=args.idle_timeout,
            total=args.total_timeout,
        ),
        retry=RetryPolicy(attempts_max=args.retries, budget_ratio=args.retry_budget),
        max_body_bytes=args.max_body_bytes,
        max_connections=args.max_connections,
        forward_authorization=args.forward_authorization,
        api_keys_file=args.api_keys_file,
    )


def make_discovery(config: RouterConfig) -> Discovery:
    found = config.discovery
    if found.static_backends:
        return StaticDiscovery(found.static_backends)
    return KubernetesDiscovery(load_api_server(found.namespace), found.selector, found.engine_port)


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


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    try:
        config = build_config(args)
    except ValueError as error:
        print(f"llmservice router: {error}", file=sys.stderr)
        return 2
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=args.log_level.upper(), handlers=[handler], force=True)
    api_keys = None
    if config.api_keys_file:
        try:
            api_keys = load_api_keys(config.api_keys_file)
        except ValueError as error:
            print(f"llmservice router: {error}", file=sys.stderr)
            return 2
    try:
        discovery = make_discovery(config)
    except Exception as error:  # no cluster config, unreadable token, bad static URL
        print(f"llmservice router: cannot set up replica discovery: {error}", file=sys.stderr)
        return 2
    app = create_app(
        config,
        discovery=discovery,
        access_log=AccessLog(enabled=not args.no_access_log),
        api_keys=api_keys,
    )
    server_config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_config=None,
        log_level=args.log_level,
        proxy_headers=False,
        timeout_graceful_shutdown=int(args.grace_period),
        server_header=False,
    )
    server = DrainingServer(server_config, app, args.drain_delay)
    # Requests allocate many short-lived containers; collecting the young generation less
    # often, with everything loaded at startup frozen out of the scans, saves CPU per request.
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, 20, 50)
    server.run()
    return 0
