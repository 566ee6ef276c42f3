"""``llmservice router``: run the session-affinity router.

The operator renders these arguments into the router Deployment; they are the router's
whole configuration (defaults in `llmservice.router.config`, taken from the LLMService API
where it has the same knob)::

    llmservice router
      --served-model-name NAME           the model name the engine serves (required)
      --alias NAME                       another accepted model name (repeatable)
      --accept-any-model-name            any model name is taken as the served one
      --host 0.0.0.0  --port 8080        where to listen
      # replicas: either watch the engine Pods ...
      --namespace NS                     default: the Pod's own namespace ("default" outside)
      --selector 'app.kubernetes.io/instance=X,app.kubernetes.io/component=engine'
      --engine-port 8000
      # ... or a fixed list (tests, benchmarks)
      --static-backends http://127.0.0.1:8001,http://127.0.0.1:8002   (plain http only)
      # routing
      --strategy SessionAffinity|LeastLoad|RoundRobin   the API's router.strategy names
      --session-header X-Session-ID
      --load-bound 2.0                   a session leaves its replica only above this multiple
                                         of the mean requests in flight
      --placement-bound 1.0              new sessions go where the requests in flight are
                                         within this multiple of the mean (the one of those
                                         with the fewest active sessions)
      --placement-slack 2                while other router replicas place sessions too: the
                                         first on the ring within this many of the fewest
      # placements told to the other router replicas (UDP; see llmservice.router.peers)
      --peer-port PORT                   where peers' placements are heard (unset: off; the
                                         operator's router Pods use 8082)
      --peer-selector 'app.kubernetes.io/instance=X,app.kubernetes.io/component=router'
                                         the router Pods to tell (in --namespace) ...
      --peers 10.0.0.7:8082,...          ... or a fixed list of IP:port
      --pod-name NAME                    this router's Pod, not its own peer (default:
                                         $POD_NAME, else the host name)
      --max-sessions 65536  --session-idle-timeout 600   the session table's bounds
      --session-active-seconds 30        a session counts for balance this long after a
                                         request
      --prefix-chars 512                 text-completion prompt characters hashed without
                                         a session or user
      # upstream
      --connect-timeout 5  --first-byte-timeout 120  --idle-timeout 60  --total-timeout 1800
      --retries 2                        retries on another replica before the response,
                                         per request (connect failures, resets, 502/503/504)
      --retry-budget 0.2                 retries onto replicas not known healthy, as a
                                         fraction of recent requests
      --upstream-keepalive 4             seconds an idle engine connection is kept
      # outlier ejection (circuit breaking)
      --eject-after-failures 5           consecutive failures (connect, reset, 5xx); 0: off
      --base-ejection 30                 seconds, times the replica's number of ejections
      --max-ejection 300                 seconds an ejection lasts at most
      --max-ejected-percent 50           of the replicas, at most (never the last one)
      --probe-timeout 5                  seconds for the GET /health that readmits a replica
      --max-body-bytes 8388608
      --max-buffered-body-bytes 268435456  all requests' bodies at once; more get 503
      --max-connections 1024             upstream connection pool size
      --forward-authorization            pass the client's Authorization header upstream
      # clients (see llmservice.router.config.ClientLimits for the reasons)
      --max-header-count 100             headers per request at most, else 431
      --max-header-bytes 65536           request line and headers at most, else 431
      --header-timeout 10                seconds to send a request's headers, else closed
      --keep-alive-timeout 75            seconds an idle client connection stays open
      --max-client-connections 4096      open client connections; more are closed at once
      --trusted-proxies CIDR,...         peers whose X-Forwarded-* pass on (default: none)
      # CORS (unset: off)
      --cors-allowed-origins ORIGIN,...  origins whose scripts may call the router, or *
      --cors-allowed-headers Authorization,Content-Type,X-Session-ID,X-Request-ID
      --cors-max-age SECONDS             how long a browser may cache a preflight
      --api-keys-file PATH               API keys (YAML), enforced: Bearer <key> or 401;
                                         reloaded when the file changes
      # admission (unset: no such limit)
      --max-in-flight-per-replica N      requests in flight per replica; the rest queue
      --max-queued 1000                  requests waiting at most, over all keys
      --queue-timeout 30                 seconds a request may wait for a slot
      --requests-per-minute N            global request limit
      --min-tokens-per-second-per-request R   throughput gate on the engines' decode rate
      --gate-interval 1                  seconds between scrapes of the engines' metrics
      --engine-priority                  set each request's vLLM priority from its key's
      --cold-start-timeout 0             with no replica, hold requests this long (0: 503)
      # tracing (unset: off)
      --otlp-traces-endpoint URL         export a span per request to this OTLP/HTTP URL
      --trace-sampling-ratio 1.0         share of new traces kept
      # lifecycle
      --drain-delay 5                    after SIGTERM: /readyz fails, traffic still served
      --grace-period 60                  then in-flight requests get this long to finish
      --no-access-log                    do not write the per-request JSON line
      --log-level info                   debug | info | warning | error

The values shown are the defaults (a unit test keeps them so). Where the LLMService API has
the same knob (timeouts, body size, retries, load bound, session header, strategy), the
default is the API's, so a router started by hand behaves like one rendered from an empty
``router:`` section. The lifecycle on SIGTERM (``--drain-delay``, then ``--grace-period``)
is described in `llmservice.router.server`; the process exits with 0 after it.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from llmservice.logs import JsonFormatter
from llmservice.router import config as defaults
from llmservice.router.accesslog import AccessLog
from llmservice.router.app import create_app
from llmservice.router.config import (
    AdmissionConfig,
    BalancerConfig,
    ClientLimits,
    CorsConfig,
    DiscoveryConfig,
    OutlierConfig,
    PeerConfig,
    RetryPolicy,
    RouterConfig,
    Strategy,
    Timeouts,
    TracingConfig,
)
from llmservice.router.discovery import (
    Discovery,
    KubernetesDiscovery,
    StaticDiscovery,
    load_api_server,
)
from llmservice.router.keys_reload import ApiKeysFile
from llmservice.router.server import serve

__all__ = ["JsonFormatter", "build_config", "main", "parser"]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="llmservice router",
        description="OpenAI-compatible, session-affinity router in front of engine replicas.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--served-model-name", required=True, help="the model name the engine serves")
    p.add_argument(
        "--alias",
        action="append",
        default=[],
        help="another model name clients may send, rewritten to the served name (repeatable)",
    )
    p.add_argument(
        "--accept-any-model-name",
        action="store_true",
        help="take any model name a request sends as the served model's, and rewrite it",
    )
    p.add_argument("--host", default=defaults.DEFAULT_HOST, help="address to listen on")
    p.add_argument("--port", type=int, default=defaults.DEFAULT_PORT, help="port to listen on")
    p.add_argument(
        "--namespace",
        default=None,
        help="namespace of the engine Pods; by default the router Pod's own in a cluster,"
        " 'default' outside one",
    )
    p.add_argument(
        "--selector",
        default="",
        help="label selector of the engine Pods to watch; required without --static-backends",
    )
    p.add_argument(
        "--engine-port",
        type=int,
        default=defaults.DEFAULT_ENGINE_PORT,
        help="port of the engine on each Pod",
    )
    p.add_argument(
        "--static-backends",
        default="",
        help="comma-separated http://host:port engines (plain http), instead of watching Pods",
    )
    p.add_argument(
        "--strategy",
        type=parse_strategy,
        choices=list(Strategy),
        default=defaults.DEFAULT_STRATEGY,
        help="how a replica is picked: SessionAffinity (a session stays on its replica; new"
        " ones are placed for balance on a hash ring), LeastLoad or RoundRobin; the older"
        " spellings session,"
        " least-load and round-robin are still accepted",
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
        help="a session moves off its replica only while that replica holds more than this"
        " multiple of the mean requests in flight, and no new session goes there",
    )
    p.add_argument(
        "--placement-bound",
        type=float,
        default=defaults.DEFAULT_PLACEMENT_BOUND,
        help="a new session goes only to a replica holding at most this multiple of the mean"
        " requests in flight (a new session has no cache to lose), the one of them with the"
        " fewest active sessions (see --session-active-seconds)",
    )
    p.add_argument(
        "--placement-slack",
        type=int,
        default=defaults.DEFAULT_PLACEMENT_SLACK,
        help="while later turns show that other router replicas place sessions too, a new"
        " session goes to the first replica on the ring from its key with at most this many"
        " active sessions more than the fewest, whatever the requests in flight, so that the"
        " router replicas agree",
    )
    p.add_argument(
        "--peer-port",
        type=int,
        default=None,
        help="UDP port on which the placements of the other router replicas are heard, and"
        " from which this one's are sent to them (unset: placements are not shared)",
    )
    p.add_argument(
        "--peer-selector",
        default="",
        help="label selector of the router Pods (in --namespace) told of this router's"
        " placements, at --peer-port; this Pod (--pod-name) is left out",
    )
    p.add_argument(
        "--peers",
        default="",
        help="comma-separated IP:port of the other router replicas, instead of --peer-selector",
    )
    p.add_argument(
        "--pod-name",
        default=os.environ.get("POD_NAME") or None,
        help="this router's Pod name, left out of its peers (default: $POD_NAME, else the"
        " host name, which is the Pod name in Kubernetes)",
    )
    p.add_argument(
        "--max-sessions",
        type=int,
        default=defaults.DEFAULT_MAX_SESSIONS,
        help="sessions remembered (least recently used forgotten first); about 260 bytes each",
    )
    p.add_argument(
        "--session-idle-timeout",
        type=float,
        default=defaults.DEFAULT_SESSION_IDLE_SECONDS,
        help="seconds after its last request that a session is forgotten",
    )
    p.add_argument(
        "--session-active-seconds",
        type=float,
        default=defaults.DEFAULT_SESSION_ACTIVE_SECONDS,
        help="seconds after its last request that a session still counts towards its"
        " replica's share when new sessions are placed",
    )
    p.add_argument(
        "--prefix-chars",
        type=int,
        default=defaults.DEFAULT_PREFIX_CHARS,
        help="characters of a text-completion prompt hashed when a request has no session"
        " header and no `user` field (a chat is keyed by its system and first user messages)",
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
        help="seconds from sending a request until the response headers; not retried",
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
        help="retries per request on another replica, only before the response went to the"
        " client: connect failures and timeouts, resets before the status line, 502/503/504"
        " answers; never a 500, a 4xx or a first-byte timeout",
    )
    p.add_argument(
        "--retry-budget",
        type=float,
        default=defaults.DEFAULT_RETRY_BUDGET_RATIO,
        help="retries onto replicas not known healthy, as a fraction of the requests of the last"
        f" {defaults.DEFAULT_RETRY_BUDGET_WINDOW:g} s (with at least"
        f" {defaults.DEFAULT_RETRY_BUDGET_MIN_PER_SECOND:g} per second always allowed)",
    )
    p.add_argument(
        "--max-body-bytes",
        type=int,
        default=defaults.DEFAULT_MAX_BODY_BYTES,
        help="largest accepted request body; larger ones get 413",
    )
    p.add_argument(
        "--max-buffered-body-bytes",
        type=int,
        default=defaults.DEFAULT_MAX_BUFFERED_BODY_BYTES,
        help="request body bytes all requests may hold at once (never less than one largest"
        " body); a request that would go over gets 503 router_busy with Retry-After",
    )
    p.add_argument(
        "--max-connections",
        type=int,
        default=defaults.DEFAULT_MAX_CONNECTIONS,
        help="upstream connections open at once, at most",
    )
    p.add_argument(
        "--upstream-keepalive",
        type=float,
        default=defaults.DEFAULT_UPSTREAM_KEEPALIVE,
        help="seconds an idle engine connection is kept for reuse (below the engine's own"
        " keep-alive timeout, 5 s for vLLM)",
    )
    p.add_argument(
        "--eject-after-failures",
        type=int,
        default=defaults.DEFAULT_EJECT_AFTER_FAILURES,
        help="consecutive failed attempts (connect failure, reset, 5xx) that eject a replica;"
        " 0 turns ejection off",
    )
    p.add_argument(
        "--base-ejection",
        type=float,
        default=defaults.DEFAULT_BASE_EJECTION,
        help="seconds an ejection lasts, times the number of times the replica was ejected",
    )
    p.add_argument(
        "--max-ejection",
        type=float,
        default=defaults.DEFAULT_MAX_EJECTION,
        help="seconds an ejection lasts at most",
    )
    p.add_argument(
        "--max-ejected-percent",
        type=int,
        default=defaults.DEFAULT_MAX_EJECTED_PERCENT,
        help="share of the replicas ejected at once, at most (the last one never is)",
    )
    p.add_argument(
        "--probe-timeout",
        type=float,
        default=defaults.DEFAULT_PROBE_TIMEOUT,
        help="seconds for the GET /health that readmits an ejected replica",
    )
    p.add_argument(
        "--max-header-count",
        type=int,
        default=defaults.DEFAULT_MAX_HEADER_COUNT,
        help="headers a request may carry; more get 431 and the connection is closed",
    )
    p.add_argument(
        "--max-header-bytes",
        type=int,
        default=defaults.DEFAULT_MAX_HEADER_BYTES,
        help="bytes of request line and headers a request may carry; more get 431",
    )
    p.add_argument(
        "--header-timeout",
        type=float,
        default=defaults.DEFAULT_HEADER_TIMEOUT,
        help="seconds a client has to send a request's headers, from its first byte or the"
        " connect; the connection is closed after that",
    )
    p.add_argument(
        "--keep-alive-timeout",
        type=float,
        default=defaults.DEFAULT_KEEP_ALIVE_TIMEOUT,
        help="seconds an idle client connection is kept open; keep it above the idle timeout"
        " of the load balancer in front (60 s on AWS ALB, 600 s on GCP)",
    )
    p.add_argument(
        "--max-client-connections",
        type=int,
        default=defaults.DEFAULT_MAX_CLIENT_CONNECTIONS,
        help="client connections open at once; one more is closed as soon as it is accepted",
    )
    p.add_argument(
        "--trusted-proxies",
        default="",
        metavar="CIDR,...",
        help="comma-separated networks of the proxies in front (for example 10.0.0.0/8):"
        " their X-Forwarded-For, -Proto, -Host, -Port and Forwarded headers pass on to the"
        " engine, with the peer's address appended to X-Forwarded-For; any other client's are"
        " replaced by its own address and scheme (default: trust none)",
    )
    p.add_argument(
        "--cors-allowed-origins",
        default="",
        metavar="ORIGIN,...",
        help="comma-separated origins (https://chat.example) whose scripts may call the router,"
        " or * for any: their preflights get 204 without a key and every response carries"
        " the CORS headers (default: CORS off, no such header at all)",
    )
    p.add_argument(
        "--cors-allowed-headers",
        default=",".join(defaults.DEFAULT_CORS_ALLOWED_HEADERS),
        metavar="NAME,...",
        help="request headers a browser may send, answered to preflights",
    )
    p.add_argument(
        "--cors-max-age",
        type=int,
        default=None,
        metavar="SECONDS",
        help="how long a browser may cache a preflight's answer (default: the browser's)",
    )
    p.add_argument(
        "--forward-authorization",
        action="store_true",
        help="pass the client's Authorization header upstream",
    )
    p.add_argument(
        "--api-keys-file",
        default=None,
        help="YAML file of named API keys and their limits; when set, /v1/chat/completions,"
        " /v1/completions, /v1/embeddings, /v1/models and /api/chat need 'Authorization:"
        " Bearer <key>' (401 otherwise). A file that cannot be read or parsed stops the"
        " router at start; a changed file is applied within seconds, or rejected (the last"
        " good keys stay) if it does not parse. Without it the router is open",
    )
    p.add_argument(
        "--max-in-flight-per-replica",
        type=int,
        default=None,
        help="requests in flight on one replica at once; the rest wait in the router's queue"
        " (default: no cap)",
    )
    p.add_argument(
        "--max-queued",
        type=int,
        default=defaults.DEFAULT_MAX_QUEUED,
        help="requests waiting for a slot at most, over all keys; more get 429 (queue_full)",
    )
    p.add_argument(
        "--queue-timeout",
        type=float,
        default=defaults.DEFAULT_QUEUE_TIMEOUT,
        help="seconds a request may wait for a slot before it gets 429 (queue_timeout)",
    )
    p.add_argument(
        "--cold-start-timeout",
        type=float,
        default=defaults.DEFAULT_COLD_START_TIMEOUT,
        help="seconds a request that arrives while no engine replica is ready is held for one"
        " (an engine scaling from zero) before it gets 503; 0: 503 at once",
    )
    p.add_argument(
        "--requests-per-minute",
        type=int,
        default=None,
        help="requests per minute over all keys (a token bucket bursting to one minute's"
        " worth); more get 429 (global_rate_limit) (default: no limit)",
    )
    p.add_argument(
        "--min-tokens-per-second-per-request",
        type=float,
        default=None,
        help="send no new request to a replica while its running requests decode slower than"
        " this, per request, by its engine's metrics (default: no gate)",
    )
    p.add_argument(
        "--gate-interval",
        type=float,
        default=defaults.DEFAULT_GATE_INTERVAL,
        help="seconds between two scrapes of the engines' metrics for the throughput gate",
    )
    p.add_argument(
        "--engine-priority",
        action="store_true",
        help="set each request's vLLM `priority` field from its API key's priority, replacing"
        " any the client sent (the engines must run --scheduling-policy priority)",
    )
    p.add_argument(
        "--otlp-traces-endpoint",
        default=None,
        metavar="URL",
        help="export a span per proxied request to this OTLP/HTTP traces URL (for example"
        " http://collector:4318/v1/traces) and send the engine a traceparent naming it"
        " (default: no tracing)",
    )
    p.add_argument(
        "--trace-sampling-ratio",
        type=float,
        default=defaults.DEFAULT_TRACE_SAMPLING_RATIO,
        help="share of new traces kept; a client's traceparent decides for its own trace",
    )
    p.add_argument(
        "--drain-delay",
        type=float,
        default=defaults.DEFAULT_DRAIN_DELAY,
        help="seconds /readyz fails after SIGTERM, still serving, before the listener closes",
    )
    p.add_argument(
        "--grace-period",
        type=float,
        default=defaults.DEFAULT_GRACE_PERIOD,
        help="seconds requests in flight get to finish once the listener is closed",
    )
    p.add_argument(
        "--no-access-log", action="store_true", help="do not write a JSON line per request"
    )
    p.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="threshold of the JSON log lines on stderr",
    )
    return p


def parse_strategy(value: str) -> Strategy:
    """``--strategy``: the API's name, or one of the spellings the flag took before."""
    legacy = defaults.LEGACY_STRATEGY_NAMES.get(value)
    if legacy is not None:
        return legacy
    try:
        return Strategy(value)
    except ValueError:
        names = ", ".join(Strategy)
        raise argparse.ArgumentTypeError(f"unknown strategy {value!r} (one of {names})") from None


def _csv(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


def build_config(args: argparse.Namespace) -> RouterConfig:
    """The `RouterConfig` for parsed arguments; raises ValueError when they are inconsistent."""
    static = tuple(url.strip() for url in args.static_backends.split(",") if url.strip())
    peers = PeerConfig(
        port=args.peer_port,
        host=args.host,
        static=_csv(args.peers),
        selector=args.peer_selector,
        self_name=args.pod_name,
    )
    return RouterConfig(
        served_model_name=args.served_model_name,
        aliases=tuple(args.alias),
        accept_any_model_name=args.accept_any_model_name,
        discovery=DiscoveryConfig(
            static_backends=static,
            namespace=args.namespace,
            selector=args.selector,
            engine_port=args.engine_port,
        ),
        session_header=args.session_header,
        balancer=BalancerConfig(
            strategy=args.strategy,
            load_bound=args.load_bound,
            placement_bound=args.placement_bound,
            placement_slack=args.placement_slack,
            max_sessions=args.max_sessions,
            session_idle_seconds=args.session_idle_timeout,
            session_active_seconds=args.session_active_seconds,
            prefix_chars=args.prefix_chars,
            stable_keys=peers.enabled,
        ),
        timeouts=Timeouts(
            connect=args.connect_timeout,
            first_byte=args.first_byte_timeout,
            idle=args.idle_timeout,
            total=args.total_timeout,
        ),
        retry=RetryPolicy(attempts_max=args.retries, budget_ratio=args.retry_budget),
        admission=AdmissionConfig(
            max_in_flight_per_replica=args.max_in_flight_per_replica,
            max_queued=args.max_queued,
            queue_timeout=args.queue_timeout,
            requests_per_minute=args.requests_per_minute,
            min_tokens_per_second_per_request=args.min_tokens_per_second_per_request,
            gate_interval=args.gate_interval,
            engine_priority=args.engine_priority,
            cold_start_timeout=args.cold_start_timeout,
        ),
        max_body_bytes=args.max_body_bytes,
        max_buffered_body_bytes=args.max_buffered_body_bytes,
        outliers=OutlierConfig(
            consecutive_failures=args.eject_after_failures,
            base_ejection=args.base_ejection,
            max_ejection=args.max_ejection,
            max_ejected_percent=args.max_ejected_percent,
            probe_timeout=args.probe_timeout,
        ),
        max_connections=args.max_connections,
        upstream_keepalive=args.upstream_keepalive,
        forward_authorization=args.forward_authorization,
        api_keys_file=args.api_keys_file,
        tracing=TracingConfig(
            otlp_endpoint=args.otlp_traces_endpoint, sampling_ratio=args.trace_sampling_ratio
        ),
        trusted_proxies=_csv(args.trusted_proxies),
        cors=CorsConfig(
            allowed_origins=_csv(args.cors_allowed_origins),
            allowed_headers=_csv(args.cors_allowed_headers),
            max_age=args.cors_max_age,
        ),
        client_limits=ClientLimits(
            max_header_count=args.max_header_count,
            max_header_bytes=args.max_header_bytes,
            header_timeout=args.header_timeout,
            keep_alive_timeout=args.keep_alive_timeout,
            max_connections=args.max_client_connections,
        ),
        peers=peers,
    )


def make_discovery(config: RouterConfig) -> Discovery:
    found = config.discovery
    if found.static_backends:
        return StaticDiscovery(found.static_backends)
    return KubernetesDiscovery(load_api_server(found.namespace), found.selector, found.engine_port)


def make_peer_discovery(config: RouterConfig) -> Discovery | None:
    """The router Pods to share placements with, found as the engines are; None when the
    peers are a fixed list or placements are not shared (`create_app` handles both)."""
    peers = config.peers
    if not peers.selector or peers.port is None:
        return None
    api = load_api_server(config.discovery.namespace)
    return KubernetesDiscovery(api, peers.selector, peers.port)


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
    api_keys_file = None
    if config.api_keys_file:
        try:
            api_keys_file = ApiKeysFile.load(config.api_keys_file)
        except ValueError as error:
            print(f"llmservice router: {error}", file=sys.stderr)
            return 2
    try:
        discovery = make_discovery(config)
        peer_discovery = make_peer_discovery(config)
    except Exception as error:  # no cluster config, unreadable token, bad static URL
        print(f"llmservice router: cannot set up replica discovery: {error}", file=sys.stderr)
        return 2
    app = create_app(
        config,
        discovery=discovery,
        access_log=AccessLog(enabled=not args.no_access_log),
        api_keys_file=api_keys_file,
        peer_discovery=peer_discovery,
    )
    serve(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        drain_delay=args.drain_delay,
        grace_period=args.grace_period,
    )
    return 0
