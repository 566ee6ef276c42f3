"""Configuration value objects of the router, with named defaults.

Every knob the router has lives here as a frozen dataclass field whose default is a named
module constant, so the CLI, the operator's rendering and the tests agree on one value.
Knobs the LLMService API also has (timeouts, body size, retries, load bound, session header,
strategy) take their defaults from the API models, so a router started by hand behaves like
one the operator renders from an empty `router:` section. The objects are plain data:
building an app from them performs no I/O.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass, field

from llmservice.api import spec as api

# The API's defaults, read once from its models rather than repeated here.
_API_ROUTER = api.RouterSpec()
_API_TIMEOUTS = _API_ROUTER.timeouts
_API_ADMISSION = _API_ROUTER.admission
_API_TRACING = api.MonitoringSpec().tracing

DEFAULT_HOST = "0.0.0.0"  # noqa: S104 - the router serves the Pod network
DEFAULT_PORT = 8080
DEFAULT_ENGINE_PORT = 8000
DEFAULT_SESSION_HEADER = _API_ROUTER.session_header
DEFAULT_REQUEST_ID_HEADER = "X-Request-ID"
DEFAULT_LOAD_BOUND = _API_ROUTER.load_bound
DEFAULT_VIRTUAL_NODES = 1000
DEFAULT_PREFIX_CHARS = 512
# A new session has no cache to lose: it goes only where the requests in flight are within
# this multiple of the mean (a known session leaves its replica only past the load bound).
# At 1.0, not above the mean: the TTFT tail came from replicas that took new sessions while
# busy and then kept them (p99 127 against 176 ms at 1.25; bench/README.md).
DEFAULT_PLACEMENT_BOUND = 1.0
# While other router replicas place sessions too, a new session goes to the first replica on
# the ring from its key among those within this many active sessions of the fewest: the
# router replicas' counts differ by a session or two, and with the fewest alone they would
# send a session apart (bench/README.md, "Placement shared by router replicas").
DEFAULT_PLACEMENT_SLACK = 2
DEFAULT_MAX_SESSIONS = 65_536
DEFAULT_SESSION_IDLE_SECONDS = 600.0
# A session counts towards its replica's balance while it sent a request this recently: about
# a chat user's pause between turns, so that what is counted is the conversations going on
# now (sessions that ended long ago made replicas look full and young ones crowd elsewhere).
DEFAULT_SESSION_ACTIVE_SECONDS = 30.0
DEFAULT_MAX_BODY_BYTES = _API_ROUTER.max_request_bytes
# Request body bytes all requests may hold at once: a body costs about twice its size while
# it is read and joined, so this keeps bodies under about half of the router's 1 GiB limit.
DEFAULT_MAX_BUFFERED_BODY_BYTES = 256 << 20

DEFAULT_CONNECT_TIMEOUT = float(_API_TIMEOUTS.connect_seconds)
DEFAULT_FIRST_BYTE_TIMEOUT = float(_API_TIMEOUTS.first_byte_seconds)
DEFAULT_IDLE_TIMEOUT = float(_API_TIMEOUTS.idle_seconds)
DEFAULT_TOTAL_TIMEOUT = float(_API_TIMEOUTS.total_seconds)

DEFAULT_RETRIES = _API_ROUTER.retries
DEFAULT_RETRY_BUDGET_RATIO = 0.2
DEFAULT_RETRY_BUDGET_MIN_PER_SECOND = 10.0
DEFAULT_RETRY_BUDGET_WINDOW = 10.0

# Passive outlier ejection (Envoy's outlier detection defaults where it has one).
DEFAULT_EJECT_AFTER_FAILURES = 5
DEFAULT_BASE_EJECTION = 30.0
DEFAULT_MAX_EJECTION = 300.0
DEFAULT_MAX_EJECTED_PERCENT = 50
DEFAULT_PROBE_TIMEOUT = 5.0

# Idle upstream connections are closed before the engine's own keep-alive timeout (vLLM
# serves with uvicorn, which closes idle connections after 5 s), so the router rarely
# writes a request onto a connection the engine is closing.
DEFAULT_UPSTREAM_KEEPALIVE = 4.0

DEFAULT_MAX_QUEUED = _API_ADMISSION.max_queued
DEFAULT_QUEUE_TIMEOUT = float(_API_ADMISSION.queue_timeout_seconds)
DEFAULT_GATE_INTERVAL = 1.0
DEFAULT_COLD_START_TIMEOUT = 0.0  # no hold: with no replica, 503 at once
DEFAULT_TRACE_SAMPLING_RATIO = _API_TRACING.sampling_ratio

DEFAULT_MAX_CONNECTIONS = 1024

# Client connections (`ClientLimits`; the reasons for each value are in its docstring).
DEFAULT_MAX_HEADER_COUNT = 100
DEFAULT_MAX_HEADER_BYTES = 65_536
DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_KEEP_ALIVE_TIMEOUT = 75.0
DEFAULT_MAX_CLIENT_CONNECTIONS = 4096

DEFAULT_CORS_ALLOWED_HEADERS = tuple(_API_ROUTER.cors.allowed_headers)
DEFAULT_DRAIN_DELAY = 5.0
DEFAULT_GRACE_PERIOD = 60.0


class Strategy(enum.StrEnum):
    """How the balancer picks a replica (see `llmservice.router.balancer`).

    The values are the API's `router.strategy` names (`llmservice.api.spec.RoutingStrategy`),
    so the operator passes the field to ``--strategy`` as it is; a test checks they match.
    """

    SESSION = "SessionAffinity"
    """Sticky sessions placed for balance (`llmservice.router.sticky`); the conversation's
    head when there is no session."""
    LEAST_LOAD = "LeastLoad"
    """The replica with the fewest requests in flight."""
    ROUND_ROBIN = "RoundRobin"
    """Each ready replica in turn."""


# The spellings ``--strategy`` took before it used the API's names; still accepted.
LEGACY_STRATEGY_NAMES = {
    "session": Strategy.SESSION,
    "least-load": Strategy.LEAST_LOAD,
    "round-robin": Strategy.ROUND_ROBIN,
}
DEFAULT_STRATEGY = Strategy(_API_ROUTER.strategy)


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Upstream timeouts in seconds; none of them is unbounded.

    ``connect`` covers the TCP connect, ``first_byte`` the wait from sending the request to
    the response headers, ``idle`` the longest silence between two body chunks, and ``total``
    the whole exchange including the streamed body. An engine answers a non-streaming
    request only when the whole completion is ready, so ``first_byte`` bounds the generation
    of non-streaming requests and should be generous.
    """

    connect: float = DEFAULT_CONNECT_TIMEOUT
    first_byte: float = DEFAULT_FIRST_BYTE_TIMEOUT
    idle: float = DEFAULT_IDLE_TIMEOUT
    total: float = DEFAULT_TOTAL_TIMEOUT

    def __post_init__(self) -> None:
        for name in ("connect", "first_byte", "idle", "total"):
            if not getattr(self, name) > 0:
                raise ValueError(f"timeout {name} must be positive")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retries on another replica, only for failures before the first response byte.

    ``attempts_max`` is the number of retries per request (not counting the first try).
    The budget keeps retries onto replicas that are not known healthy to ``budget_ratio`` of
    the requests seen in the last ``budget_window`` seconds, with at least
    ``budget_min_per_second`` always allowed, so a failing fleet is not hit with a multiple
    of its load (see `llmservice.router.retry_budget`).
    """

    attempts_max: int = DEFAULT_RETRIES
    budget_ratio: float = DEFAULT_RETRY_BUDGET_RATIO
    budget_min_per_second: float = DEFAULT_RETRY_BUDGET_MIN_PER_SECOND
    budget_window: float = DEFAULT_RETRY_BUDGET_WINDOW

    def __post_init__(self) -> None:
        if self.attempts_max < 0:
            raise ValueError("retries must be >= 0")
        if self.budget_ratio < 0 or self.budget_min_per_second < 0 or self.budget_window <= 0:
            raise ValueError("retry budget values must be >= 0 (window > 0)")


@dataclass(frozen=True, slots=True)
class OutlierConfig:
    """Passive outlier ejection (see `llmservice.router.outliers`).

    A replica with ``consecutive_failures`` failed attempts in a row (connect failures,
    resets before the response, 5xx answers) is ejected for ``base_ejection`` seconds times
    the number of times it has been ejected, at most ``max_ejection``; it is readmitted after
    a successful ``GET /health`` (``probe_timeout`` seconds at most) once that time is over.
    At most ``max_ejected_percent`` of the replicas are ejected at once, and never the last
    routable one. ``consecutive_failures`` 0 turns ejection off.
    """

    consecutive_failures: int = DEFAULT_EJECT_AFTER_FAILURES
    base_ejection: float = DEFAULT_BASE_EJECTION
    max_ejection: float = DEFAULT_MAX_EJECTION
    max_ejected_percent: int = DEFAULT_MAX_EJECTED_PERCENT
    probe_timeout: float = DEFAULT_PROBE_TIMEOUT

    def __post_init__(self) -> None:
        if self.consecutive_failures < 0:
            raise ValueError("consecutive failures must be >= 0")
        if not self.base_ejection > 0 or self.max_ejection < self.base_ejection:
            raise ValueError("the base ejection must be positive and at most the maximum")
        if not 0 <= self.max_ejected_percent <= 100:
            raise ValueError("max ejected percent must be between 0 and 100")
        if not self.probe_timeout > 0:
            raise ValueError("the probe timeout must be positive")


@dataclass(frozen=True, slots=True)
class BalancerConfig:
    """Routing: the strategy, the sticky balancer's bounds and the prefix used without a key."""

    strategy: Strategy = DEFAULT_STRATEGY
    load_bound: float = DEFAULT_LOAD_BOUND
    placement_bound: float = DEFAULT_PLACEMENT_BOUND
    placement_slack: int = DEFAULT_PLACEMENT_SLACK
    max_sessions: int = DEFAULT_MAX_SESSIONS
    session_idle_seconds: float = DEFAULT_SESSION_IDLE_SECONDS
    session_active_seconds: float = DEFAULT_SESSION_ACTIVE_SECONDS
    virtual_nodes: int = DEFAULT_VIRTUAL_NODES
    prefix_chars: int = DEFAULT_PREFIX_CHARS
    # Sessions kept under a hash every router process agrees on, which the placements
    # told to peers name (`llmservice.router.peers`); else Python's own, cheaper one.
    stable_keys: bool = False

    def __post_init__(self) -> None:
        if min(self.load_bound, self.placement_bound) < 1.0:
            raise ValueError("load and placement bounds must be >= 1.0")
        if self.placement_slack < 0:
            raise ValueError("the placement slack must be >= 0")
        if self.virtual_nodes < 1 or self.prefix_chars < 1 or self.max_sessions < 1:
            raise ValueError("virtual nodes, prefix chars and max sessions must be >= 1")
        if self.session_idle_seconds <= 0 or self.session_active_seconds <= 0:
            raise ValueError("the session idle and active times must be positive")


@dataclass(frozen=True, slots=True)
class DiscoveryConfig:
    """Where the engine replicas are: a static list, or Pods found through the API server.

    With ``static_backends`` set, the API server is never contacted. Otherwise the router
    watches Pods in ``namespace`` matching ``selector`` and sends to ``podIP:engine_port``.
    """

    static_backends: tuple[str, ...] = ()
    namespace: str | None = None
    selector: str = ""
    engine_port: int = DEFAULT_ENGINE_PORT

    def __post_init__(self) -> None:
        if not self.static_backends and not self.selector:
            raise ValueError("either static backends or a pod label selector is required")


@dataclass(frozen=True, slots=True)
class AdmissionConfig:
    """What the router lets through (see `llmservice.router.admission`); None: no such limit.

    ``max_in_flight_per_replica`` caps each replica's requests from this router (the
    operator passes the engine's maxNumSeqs when the API leaves it unset); the rest wait in a
    queue of at most ``max_queued`` requests for at most ``queue_timeout`` seconds.
    ``requests_per_minute`` is the global request limit. ``min_tokens_per_second_per_request``
    turns on the throughput gate, which scrapes the engines every ``gate_interval`` seconds.
    ``engine_priority`` sets each request's vLLM ``priority`` from its key's (the engines run
    ``--scheduling-policy priority``). ``cold_start_timeout`` (seconds, 0: off) holds requests
    that arrive while no replica is routable, in the same queue, until one is or the timeout
    passes: an engine scaled to zero is woken by the held requests (the operator sees them in
    ``llmservice_router_queued``) rather than refused.
    """

    max_in_flight_per_replica: int | None = None
    max_queued: int = DEFAULT_MAX_QUEUED
    queue_timeout: float = DEFAULT_QUEUE_TIMEOUT
    requests_per_minute: int | None = None
    min_tokens_per_second_per_request: float | None = None
    gate_interval: float = DEFAULT_GATE_INTERVAL
    engine_priority: bool = False
    cold_start_timeout: float = DEFAULT_COLD_START_TIMEOUT

    def __post_init__(self) -> None:
        if self.max_in_flight_per_replica is not None and self.max_in_flight_per_replica < 1:
            raise ValueError("max in flight per replica must be >= 1")
        if self.max_queued < 0:
            raise ValueError("max queued must be >= 0")
        if not self.queue_timeout > 0 or not self.gate_interval > 0:
            raise ValueError("the queue timeout and the gate interval must be positive")
        if self.requests_per_minute is not None and self.requests_per_minute < 1:
            raise ValueError("requests per minute must be >= 1")
        if not self.cold_start_timeout >= 0:
            raise ValueError("the cold start timeout must be >= 0")
        floor = self.min_tokens_per_second_per_request
        if floor is not None and not floor > 0:
            raise ValueError("min tokens per second per request must be positive")


@dataclass(frozen=True, slots=True)
class PeerConfig:
    """Placements shared with the other router replicas (`llmservice.router.peers`).

    Off without a ``port``. The peers are a fixed list of ``host:port`` (``static``) or
    the router Pods matching ``selector`` (in the engines' namespace) but the one named
    ``self_name``, at ``port``.
    """

    port: int | None = None
    host: str = DEFAULT_HOST
    static: tuple[str, ...] = ()
    selector: str = ""
    self_name: str | None = None

    def __post_init__(self) -> None:
        if self.port is not None and not 0 < self.port < 65536:
            raise ValueError("the peer port must be between 1 and 65535")
        if (self.static or self.selector) and self.port is None:
            raise ValueError("peers need a peer port")
        if self.static and self.selector:
            raise ValueError("peers are a static list or a Pod selector, not both")
        for peer in self.static:
            # An address, not a name: datagrams are taken only from the peers' addresses.
            host, _, port = peer.rpartition(":")
            try:
                ipaddress.ip_address(host.removeprefix("[").removesuffix("]"))
            except ValueError:
                raise ValueError(f"peer {peer!r} is not an IP address and port") from None
            if not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"peer {peer!r} is not an IP address and port")

    @property
    def enabled(self) -> bool:
        return self.port is not None


@dataclass(frozen=True, slots=True)
class TracingConfig:
    """Spans of proxied requests (see `llmservice.router.tracing`); off without an endpoint.

    ``otlp_endpoint`` is the collector's OTLP/HTTP traces URL, used as it is (for example
    ``http://collector:4318/v1/traces``); ``sampling_ratio`` is the share of new traces kept.
    """

    otlp_endpoint: str | None = None
    sampling_ratio: float = DEFAULT_TRACE_SAMPLING_RATIO

    def __post_init__(self) -> None:
        endpoint = self.otlp_endpoint
        if endpoint is not None and not endpoint.startswith(("http://", "https://")):
            raise ValueError(f"the OTLP traces endpoint must be an http(s) URL, not {endpoint!r}")
        if not 0.0 <= self.sampling_ratio <= 1.0:
            raise ValueError("the trace sampling ratio must be between 0 and 1")


@dataclass(frozen=True, slots=True)
class ClientLimits:
    """What one client connection may hold, enforced by `llmservice.router.http_limits`.

    ``max_header_count`` headers and ``max_header_bytes`` bytes of request line plus headers
    at most, else 431 (Envoy's defaults are 100 headers and 60 KiB; an API request carries a
    dozen headers and well under 4 KiB). The whole head must arrive within
    ``header_timeout`` seconds of its first byte (or of the connect), else the connection is
    closed: a client that trickles its headers holds nothing for long, while any real
    client, even on a slow link, sends 64 KiB well within 10 s. An idle keep-alive
    connection is closed after ``keep_alive_timeout`` seconds: longer than the idle timeout
    of the usual proxies in front (AWS ALB and NGINX upstream keep-alive 60 s), so it is
    they, not the router, that close an idle connection, and a client reusing one never
    races the router's close; as with NGINX and Envoy, 75 s (behind GCP's load balancer,
    whose idle timeout is 600 s, raise it above that). At most ``max_connections`` client
    connections are open at once; one more is closed as soon as it is accepted, before
    anything is read, so that a flood of connections costs the router no memory and a
    client sees a connection error it can retry elsewhere (a 503 would need its request
    read first, which is the very cost the cap is there to refuse).
    """

    max_header_count: int = DEFAULT_MAX_HEADER_COUNT
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    keep_alive_timeout: float = DEFAULT_KEEP_ALIVE_TIMEOUT
    max_connections: int = DEFAULT_MAX_CLIENT_CONNECTIONS

    def __post_init__(self) -> None:
        if self.max_header_count < 1 or self.max_header_bytes < 1024:
            raise ValueError("max header count must be >= 1 and max header bytes >= 1024")
        if not self.header_timeout > 0 or not self.keep_alive_timeout > 0:
            raise ValueError("the header and keep-alive timeouts must be positive")
        if self.max_connections < 1:
            raise ValueError("max client connections must be >= 1")


@dataclass(frozen=True, slots=True)
class CorsConfig:
    """CORS for browser front ends (`llmservice.router.cors`); off without origins.

    ``allowed_origins`` are exact origins (``https://app.example``), or ``*`` for any;
    ``allowed_headers`` the request headers a browser may send; ``max_age`` how long, in
    seconds, a browser may cache a preflight's answer (None: the browser's default).
    """

    allowed_origins: tuple[str, ...] = ()
    allowed_headers: tuple[str, ...] = DEFAULT_CORS_ALLOWED_HEADERS
    max_age: int | None = None

    def __post_init__(self) -> None:
        for origin in self.allowed_origins:
            if origin != "*" and (
                not origin.startswith(("http://", "https://")) or origin.endswith("/")
            ):
                raise ValueError(f"CORS origin {origin!r} must be * or scheme://host[:port]")
        if self.max_age is not None and self.max_age < 0:
            raise ValueError("CORS max age must be >= 0")

    @property
    def enabled(self) -> bool:
        return bool(self.allowed_origins)


@dataclass(frozen=True, slots=True)
class RouterConfig:
    """Everything `create_app` needs besides its injected collaborators."""

    served_model_name: str
    discovery: DiscoveryConfig
    aliases: tuple[str, ...] = ()
    # Any requested model name is taken as the served model's (and rewritten to it).
    accept_any_model_name: bool = False
    session_header: str = DEFAULT_SESSION_HEADER
    request_id_header: str = DEFAULT_REQUEST_ID_HEADER
    balancer: BalancerConfig = field(default_factory=BalancerConfig)
    timeouts: Timeouts = field(default_factory=Timeouts)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    admission: AdmissionConfig = field(default_factory=AdmissionConfig)
    outliers: OutlierConfig = field(default_factory=OutlierConfig)
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    # All requests' bodies together; never below max_body_bytes (see `body_budget`).
    max_buffered_body_bytes: int = DEFAULT_MAX_BUFFERED_BODY_BYTES
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    upstream_keepalive: float = DEFAULT_UPSTREAM_KEEPALIVE
    forward_authorization: bool = False
    api_keys_file: str | None = None
    tracing: TracingConfig = field(default_factory=TracingConfig)
    client_limits: ClientLimits = field(default_factory=ClientLimits)
    # Peers (CIDRs) whose X-Forwarded-* headers are passed on; others' are replaced.
    trusted_proxies: tuple[str, ...] = ()
    cors: CorsConfig = field(default_factory=CorsConfig)
    peers: PeerConfig = field(default_factory=PeerConfig)

    def __post_init__(self) -> None:
        if not self.served_model_name:
            raise ValueError("served model name is required")
        if self.peers.enabled and self.balancer.strategy is not Strategy.SESSION:
            # Only sessions have placements to share: refused rather than left unused.
            raise ValueError("a peer port needs the SessionAffinity strategy")
        if self.max_body_bytes < 1 or self.max_connections < 1:
            raise ValueError("max body bytes and max connections must be >= 1")
        if self.max_buffered_body_bytes < 1:
            raise ValueError("max buffered body bytes must be >= 1")
        if not self.upstream_keepalive > 0:
            raise ValueError("the upstream keep-alive must be positive")
        for cidr in self.trusted_proxies:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValueError(f"trusted proxy {cidr!r} is not an IP network") from None

    @property
    def body_budget(self) -> int:
        """Body bytes all requests may hold at once; one largest body always fits."""
        return max(self.max_buffered_body_bytes, self.max_body_bytes)

    @property
    def model_names(self) -> tuple[str, ...]:
        """The served name first, then the aliases, without duplicates."""
        return tuple(dict.fromkeys((self.served_model_name, *self.aliases)))
