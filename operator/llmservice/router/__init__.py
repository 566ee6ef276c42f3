"""The data plane: an OpenAI-compatible, session-affinity router in front of the engines.

Small modules with injected collaborators and no module-level state:

- `config`: frozen value objects with named defaults
- `errors`: the one exception tree and the OpenAI-style error body
- `balancer`: replica choice and the routing key; `sticky`: sticky sessions placed for
  balance; `ring`: the hash ring and what every balancer shares
- `discovery`: engine Pods from the API server, or a static list
- `proxy`: forwarding to a replica, retries, streaming; `upstream`: the pooled HTTP client
- `deadlines`: per-request timeouts; `retry_budget`: the retries all requests share
- `payloads`: request validation and rewriting, usage extraction
- `metrics`, `accesslog`: Prometheus metrics and one JSON line per request
- `auth`: API keys and their policies (`clients`); `keys_reload`: applying a changed keys
  file; `keys_metrics`: its metrics
- `clients`: who sent a request and the limits that apply to it
- `admission`: rate limits, per-replica caps and the fair queue, the throughput gate
- `app`: the ASGI application and `create_app`; `server`: listening and draining;
  `cli`: ``llmservice router``
"""

from llmservice.router.accesslog import AccessLog
from llmservice.router.app import RouterApp, create_app
from llmservice.router.balancer import (
    Balancer,
    Choice,
    LeastLoadBalancer,
    RoundRobinBalancer,
    StickyBalancer,
    make_balancer,
    prefix_key,
    routing_key,
)
from llmservice.router.config import (
    BalancerConfig,
    DiscoveryConfig,
    RetryPolicy,
    RouterConfig,
    Strategy,
    Timeouts,
    TracingConfig,
)
from llmservice.router.discovery import (
    Discovery,
    KubernetesDiscovery,
    PodTracker,
    Replica,
    StaticDiscovery,
)
from llmservice.router.errors import (
    ClientError,
    InvalidRequest,
    MethodNotAllowed,
    ModelNotFound,
    NoReadyReplica,
    NotFound,
    PayloadTooLarge,
    RouterError,
    ServiceError,
    Unauthorized,
    UnsupportedMediaType,
    UpstreamConnectError,
    UpstreamProtocolError,
    UpstreamTimeout,
    error_body,
)
from llmservice.router.metrics import RouterMetrics

__all__ = [
    "AccessLog",
    "Balancer",
    "BalancerConfig",
    "Choice",
    "ClientError",
    "Discovery",
    "DiscoveryConfig",
    "InvalidRequest",
    "KubernetesDiscovery",
    "LeastLoadBalancer",
    "MethodNotAllowed",
    "ModelNotFound",
    "NoReadyReplica",
    "NotFound",
    "PayloadTooLarge",
    "PodTracker",
    "Replica",
    "RetryPolicy",
    "RoundRobinBalancer",
    "RouterApp",
    "RouterConfig",
    "RouterError",
    "RouterMetrics",
    "ServiceError",
    "StaticDiscovery",
    "StickyBalancer",
    "Strategy",
    "Timeouts",
    "TracingConfig",
    "Unauthorized",
    "UnsupportedMediaType",
    "UpstreamConnectError",
    "UpstreamProtocolError",
    "UpstreamTimeout",
    "create_app",
    "error_body",
    "make_balancer",
    "prefix_key",
    "routing_key",
]
