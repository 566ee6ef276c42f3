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
DEFAULT_MAX_BODY_BYTES = _API_ROUTER.max_request_bytes

DEFAULT_CONNECT_TIMEOUT = float(_API_TIMEOUTS.connect_seconds)
DEFAULT_FIRST_BYTE_TIMEOUT = float(_API_TIMEOUTS.first_byte_seconds)
DEFAULT_IDLE_TIMEOUT = float(_API_TIMEOUTS.idle_seconds)
DEFAULT_TOTAL_TIMEOUT = float(_API_TIMEOUTS.total_seconds)

DEFAULT_RETRIES = _API_ROUTER.retries
DEFAULT_RETRY_BUDGET_RATIO = 0.2
DEFAULT_RETRY_BUDGET_MIN_PER_SECOND = 10.0
DEFAULT_RETRY_BUDGET_WINDOW = 10.0

DEFAULT_MAX_QUEUED = _API_ADMISSION.max_queued
DEFAULT_QUEUE_TIMEOUT = float(_API_ADMISSION.queue_timeout_seconds)
DEFAULT_GATE_INTERVAL = 1.0
DEFAULT_TRACE_SAMPLING_RATIO = _API_TRACING.sampling_ratio

DEFAULT_MAX_CONNECTIONS = 1024
DEFAULT_DRAIN_DELAY = 5.0
DEFAULT_GRACE_PERIOD = 60.0


class Strategy(enum.StrEnum):
    """How the balancer picks a replica (see `llmservice.router.balancer`).

    The values are the API's `router.strategy` names (`llmservice.api.spec.RoutingStrategy`),
    so the operator passes the field to ``--strategy`` as it is; a test checks they match.
    """

    SESSION = "SessionAffinity"
    """CHWBL on the session key; a bounded prompt prefix when there is none."""
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
    The budget keeps retries to ``budget_ratio`` of the requests seen in the last
    ``budget_window`` seconds, with at least ``budget_min_per_second`` always allowed, so a
    failing fleet is not hit with a multiple of its load.
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
class BalancerConfig:
    """Routing: the strategy, the CHWBL load bound and the prefix used without a session."""

    strategy: Strategy = DEFAULT_STRATEGY
    load_bound: float = DEFAULT_LOAD_BOUND
    virtual_nodes: int = DEFAULT_VIRTUAL_NODES
    prefix_chars: int = DEFAULT_PREFIX_CHARS

    def __post_init__(self) -> None:
        if self.load_bound < 1.0:
            raise ValueError("load bound must be >= 1.0")
        if self.virtual_nodes < 1 or self.prefix_chars < 1:
            raise ValueError("virtual nodes and prefix chars must be >= 1")


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
    ``--scheduling-policy priority``).
    """

    max_in_flight_per_replica: int | None = None
    max_queued: int = DEFAULT_MAX_QUEUED
    queue_timeout: float = DEFAULT_QUEUE_TIMEOUT
    requests_per_minute: int | None = None
    min_tokens_per_second_per_request: float | None = None
    gate_interval: float = DEFAULT_GATE_INTERVAL
    engine_priority: bool = False

    def __post_init__(self) -> None:
        if self.max_in_flight_per_replica is not None and self.max_in_flight_per_replica < 1:
            raise ValueError("max in flight per replica must be >= 1")
        if self.max_queued < 0:
            raise ValueError("max queued must be >= 0")
        if not self.queue_timeout > 0 or not self.gate_interval > 0:
            raise ValueError("the queue timeout and the gate interval must be positive")
        if self.requests_per_minute is not None and self.requests_per_minute < 1:
            raise ValueError("requests per minute must be >= 1")
        floor = self.min_tokens_per_second_per_request
        if floor is not None and not floor > 0:
            raise ValueError("min tokens per second per request must be positive")


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
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    forward_authorization: bool = False
    api_keys_file: str | None = None
    tracing: TracingConfig = field(default_factory=TracingConfig)

    def __post_init__(self) -> None:
        if not self.served_model_name:
            raise ValueError("served model name is required")
        if self.max_body_bytes < 1 or self.max_connections < 1:
            raise ValueError("max body bytes and max connections must be >= 1")

    @property
    def model_names(self) -> tuple[str, ...]:
        """The served name first, then the aliases, without duplicates."""
        return tuple(dict.fromkeys((self.served_model_name, *self.aliases)))
