"""The router's public names are pinned: changing them is a deliberate, reviewed act."""

from __future__ import annotations

import importlib

import pytest

import llmservice.router
from llmservice.router import errors

PUBLIC = [
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


def test_public_names_are_pinned() -> None:
    assert sorted(llmservice.router.__all__) == PUBLIC
    for name in PUBLIC:
        assert getattr(llmservice.router, name) is not None


# Each module's own public names: the server lifecycle, the per-request deadlines and the
# retry budget each live in a module named for what it holds.
MODULES = {
    "llmservice.router.server": ["DrainingServer", "GC_THRESHOLD", "serve", "server_config"],
    "llmservice.router.http_limits": ["BoundedHttpToolsProtocol", "bounded_protocol"],
    "llmservice.router.cors": ["ALLOWED_METHODS", "RATE_LIMIT_HEADERS", "Cors"],
    "llmservice.router.deadlines": ["TIMEOUT_MESSAGES", "Deadlines", "Watchdog", "tick_for"],
    "llmservice.router.retry_budget": ["RetryBudget"],
}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_names_are_pinned(module: str) -> None:
    loaded = importlib.import_module(module)
    assert sorted(loaded.__all__) == sorted(MODULES[module])
    for name in MODULES[module]:
        assert getattr(loaded, name) is not None


def test_every_error_is_in_the_tree_and_documented() -> None:
    doc = errors.__doc__ or ""
    for name in errors.__all__:
        value = getattr(errors, name)
        if isinstance(value, type):
            assert issubclass(value, errors.RouterError)
            assert name in doc, name
