"""The router `<name>-router`: Deployment, ServiceAccount, Role and RoleBinding.

The router discovers engine replicas by watching their Pods, so its Role grants exactly
get/list/watch on Pods in its namespace; with several router replicas it finds its peers
the same way (the router Pods, to which it sends its session placements over UDP). API keys
arrive as a mounted Secret file; the operator names the Secret and never reads it.
"""

from __future__ import annotations

from typing import Any

from llmservice.api import LLMService
from llmservice.render import naming
from llmservice.render.engine import served_name
from llmservice.render.templating import render_template

API_KEYS_DIR = "/etc/llmservice/api-keys"
API_KEYS_VOLUME = "api-keys"
# The router's drain delay (5 s) plus a margin before the kubelet's SIGKILL.
DRAIN_MARGIN_SECONDS = 20
# A rollout should not wait longer than this for one router Pod to go.
MAX_TERMINATION_GRACE_SECONDS = 3600
DEFAULT_RESOURCES: dict[str, Any] = {
    "requests": {"cpu": "250m", "memory": "256Mi"},
    "limits": {"memory": "1Gi"},
}


def selector_string(labels: dict[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in labels.items())


def drain_grace_seconds(service: LLMService) -> int:
    """How long a stopping router lets streams finish: the total timeout, within the cap."""
    total = int(service.spec.router.timeouts.total_seconds)
    return min(total, MAX_TERMINATION_GRACE_SECONDS - DRAIN_MARGIN_SECONDS)


def admission_args(service: LLMService) -> list[str]:
    """The router's admission flags; the per-replica cap defaults to the engine's batch."""
    admission = service.spec.router.admission
    cap = admission.max_in_flight_per_replica or service.spec.engine.max_num_seqs
    args = [
        "--max-in-flight-per-replica", str(cap),
        "--max-queued", str(admission.max_queued),
        "--queue-timeout", str(admission.queue_timeout_seconds),
    ]  # fmt: skip
    if admission.requests_per_minute is not None:
        args += ["--requests-per-minute", str(admission.requests_per_minute)]
    if admission.min_tokens_per_second_per_request is not None:
        floor = admission.min_tokens_per_second_per_request
        args += ["--min-tokens-per-second-per-request", str(floor)]
    return args


def peers_enabled(service: LLMService) -> bool:
    """Whether the router replicas tell each other their session placements: with sessions
    and more than one router replica (a load balancer may send a session's turns to any)."""
    router = service.spec.router
    return router.strategy == "SessionAffinity" and router.replicas > 1


def router_args(service: LLMService) -> list[str]:
    """Flags of `llmservice router`, from the spec."""
    router, model = service.spec.router, service.spec.model
    timeouts = router.timeouts
    args = [
        "router",
        "--host", "0.0.0.0",  # noqa: S104 - the Pod's own address
        "--port", str(naming.ROUTER_PORT),
        "--served-model-name", served_name(model),
    ]  # fmt: skip
    for alias in model.aliases or []:
        args += ["--alias", alias]
    if model.accept_any_model_name:
        args.append("--accept-any-model-name")
    args += [
        "--namespace", service.namespace,
        "--selector", selector_string(naming.selector_labels(service, naming.ENGINE)),
        "--engine-port", str(naming.ENGINE_PORT),
        # The router's --strategy takes the API's names as they are.
        "--strategy", router.strategy,
        "--session-header", router.session_header,
        "--load-bound", str(router.load_bound),
        "--retries", str(router.retries),
        "--connect-timeout", str(timeouts.connect_seconds),
        "--first-byte-timeout", str(timeouts.first_byte_seconds),
        "--idle-timeout", str(timeouts.idle_seconds),
        "--total-timeout", str(timeouts.total_seconds),
        "--max-body-bytes", str(router.max_request_bytes),
        # On SIGTERM, streams in flight may run this long before the Pod goes.
        "--grace-period", str(drain_grace_seconds(service)),
    ]  # fmt: skip
    args += admission_args(service)
    if peers_enabled(service):
        args += [
            "--peer-port", str(naming.ROUTER_PEER_PORT),
            "--peer-selector", selector_string(naming.selector_labels(service, naming.ROUTER)),
        ]  # fmt: skip
    autoscaling = service.spec.engine.autoscaling
    if autoscaling.enabled and autoscaling.min_replicas == 0:
        # At zero the routers hold requests while the engine starts, and stay ready.
        args += ["--cold-start-timeout", str(autoscaling.cold_start_timeout_seconds)]
    if router.api_keys_secret_ref is not None:
        args += ["--api-keys-file", f"{API_KEYS_DIR}/{router.api_keys_secret_ref.key}"]
        # The engines run priority scheduling (see engine.scheduling_policy).
        args.append("--engine-priority")
    if router.forward_authorization:
        args.append("--forward-authorization")
    cors = router.cors
    if cors.allowed_origins:
        args += ["--cors-allowed-origins", ",".join(cors.allowed_origins)]
        args += ["--cors-allowed-headers", ",".join(cors.allowed_headers)]
        if cors.max_age_seconds is not None:
            args += ["--cors-max-age", str(cors.max_age_seconds)]
    tracing = service.spec.monitoring.tracing
    if tracing.otlp_endpoint is not None:
        args += ["--otlp-traces-endpoint", tracing.otlp_endpoint]
        args += ["--trace-sampling-ratio", str(tracing.sampling_ratio)]
    return args


def _volumes(service: LLMService) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    # readOnlyRootFilesystem: the only writable place is a small /tmp.
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}]
    mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": "/tmp"}]  # noqa: S108
    ref = service.spec.router.api_keys_secret_ref
    if ref is not None:
        volumes.append(
            {
                "name": API_KEYS_VOLUME,
                "secret": {
                    "secretName": ref.name,
                    "items": [{"key": ref.key, "path": ref.key}],
                    "defaultMode": 0o440,
                },
            }
        )
        mounts.append({"name": API_KEYS_VOLUME, "mountPath": API_KEYS_DIR, "readOnly": True})
    return volumes, mounts


def _resources(service: LLMService) -> dict[str, Any]:
    user = service.spec.router.resources
    if user is None:
        return DEFAULT_RESOURCES
    return user.model_dump(by_alias=True, exclude_none=True)


def render(service: LLMService) -> list[dict[str, Any]]:
    router = service.spec.router
    volumes, mounts = _volumes(service)
    return render_template(
        "router.yaml.j2",
        metadata=naming.object_meta(service, naming.router_name(service), naming.ROUTER),
        labels=naming.labels(service, naming.ROUTER),
        selector=naming.selector_labels(service, naming.ROUTER),
        replicas=router.replicas,
        termination_grace_period_seconds=drain_grace_seconds(service) + DRAIN_MARGIN_SECONDS,
        image=router.image,
        image_pull_policy=router.image_pull_policy,
        args=router_args(service),
        port=naming.ROUTER_PORT,
        peer_port=naming.ROUTER_PEER_PORT if peers_enabled(service) else None,
        resources=_resources(service),
        volume_mounts=mounts,
        volumes=volumes,
    )
