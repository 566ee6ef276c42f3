"""The engine Deployment `<name>-engine`: vLLM's OpenAI server on GPUs.

Every vLLM flag comes from a typed field; `extraArgs` go last (the CRD forbids them from
repeating a typed flag). RoPE scaling is passed as `--hf-overrides` JSON, the way current vLLM
takes it. The rollout strategy follows the cache volume: a ReadWriteOnce claim cannot be
mounted by a surge Pod on another node, so such Deployments recreate instead.
"""

from __future__ import annotations

import json
from typing import Any

from llmservice.api import LLMService
from llmservice.api.spec import ModelSpec
from llmservice.render import naming
from llmservice.render.templating import render_template

# Startup probe budget: model download and load can take half an hour for large models.
STARTUP_MINUTES = 30
STARTUP_PROBE_PERIOD_SECONDS = 10
MODEL_SOURCE_MOUNT = "/model-source"
CACHE_VOLUME = "model-cache"
SOURCE_VOLUME = "model-source"


def served_name(model: ModelSpec) -> str:
    """The name clients send: `servedName`, else the model id (vLLM's own default)."""
    return model.served_name or model.name


def model_argument(model: ModelSpec) -> str:
    """`--model` value: the Hugging Face id, or the path under the mounted source claim."""
    if model.name.startswith("pvc://"):
        _claim, _, path = model.name.removeprefix("pvc://").partition("/")
        return f"{MODEL_SOURCE_MOUNT}/{path}"
    return model.name


def hf_overrides(model: ModelSpec) -> dict[str, Any] | None:
    """Model-config overrides for RoPE scaling, as vLLM's `--hf-overrides` expects them."""
    rope = model.rope_scaling
    if rope is None:
        return None
    scaling: dict[str, Any] = {"rope_type": rope.type, "factor": rope.factor}
    if rope.original_max_position_embeddings is not None:
        scaling["original_max_position_embeddings"] = rope.original_max_position_embeddings
    overrides: dict[str, Any] = {"rope_scaling": scaling}
    if rope.theta is not None:
        overrides["rope_theta"] = rope.theta
    return overrides


def tensor_parallel_size(service: LLMService) -> int:
    return service.spec.engine.tensor_parallel_size or service.spec.engine.gpus


def scheduling_policy(service: LLMService) -> str:
    """vLLM's scheduling policy: ``priority`` when the router has API keys, else ``fcfs``.

    The operator never reads the keys Secret, so it cannot tell whether any key has a
    priority other than the default; with keys the router sets every request's priority
    from its key (``--engine-priority``), and with equal priorities vLLM's priority policy
    serves in arrival order, exactly as ``fcfs`` does. Without keys the default policy is
    left alone, so a request that carries a priority of its own gets vLLM's 400.
    """
    return "priority" if service.spec.router.api_keys_secret_ref is not None else "fcfs"


def engine_args(service: LLMService) -> list[str]:
    """The vLLM command-line flags of the engine container."""
    model, engine = service.spec.model, service.spec.engine
    args = ["--model", model_argument(model), "--served-model-name", served_name(model)]
    args += list(model.aliases or [])
    args += ["--host", "0.0.0.0", "--port", str(naming.ENGINE_PORT)]  # noqa: S104 - Pod IP
    if model.revision:
        args += ["--revision", model.revision]
    if model.quantization != "none":
        args += ["--quantization", model.quantization]
    args += ["--dtype", model.dtype]
    if model.max_model_len is not None:
        args += ["--max-model-len", str(model.max_model_len)]
    args += ["--gpu-memory-utilization", str(engine.gpu_memory_utilization)]
    args += ["--max-num-seqs", str(engine.max_num_seqs)]
    if scheduling_policy(service) == "priority":
        args += ["--scheduling-policy", "priority"]
    tensor_parallel = tensor_parallel_size(service)
    args += ["--tensor-parallel-size", str(tensor_parallel)]
    if engine.gpus // tensor_parallel > 1:
        args += ["--pipeline-parallel-size", str(engine.gpus // tensor_parallel)]
    overrides = hf_overrides(model)
    if overrides is not None:
        args += ["--hf-overrides", json.dumps(overrides, sort_keys=True, separators=(",", ":"))]
    endpoint = service.spec.monitoring.tracing.otlp_endpoint
    if endpoint is not None:
        args += ["--otlp-traces-endpoint", endpoint]
    return args + list(engine.extra_args or [])


def _env(service: LLMService) -> list[dict[str, Any]]:
    model, engine, storage = service.spec.model, service.spec.engine, service.spec.storage
    env: list[dict[str, Any]] = [
        {"name": "VLLM_NO_USAGE_STATS", "value": "1"},
        {"name": "DO_NOT_TRACK", "value": "1"},
    ]
    if storage.enabled or storage.existing_claim:
        env.append({"name": "HF_HOME", "value": storage.mount_path})
    if model.hf_token_secret_ref is not None:
        ref = model.hf_token_secret_ref
        env.append(
            {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}
        )
    if service.spec.monitoring.tracing.otlp_endpoint is not None:
        # vLLM exports over gRPC unless told otherwise; the endpoint is the router's
        # OTLP/HTTP URL, so both speak the same protocol to the same collector.
        env.append({"name": "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "value": "http/protobuf"})
    for variable in engine.env or []:
        env.append(variable.model_dump(by_alias=True, exclude_none=True))
    return env


def cache_claim(service: LLMService) -> str | None:
    """The claim that caches weights: the one the operator creates, or an existing one."""
    storage = service.spec.storage
    if storage.enabled:
        return naming.models_claim_name(service)
    return storage.existing_claim


def _volumes(service: LLMService) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    engine, storage, model = service.spec.engine, service.spec.storage, service.spec.model
    volumes: list[dict[str, Any]] = [
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": engine.shm_size}}
    ]
    mounts: list[dict[str, Any]] = [{"name": "dshm", "mountPath": "/dev/shm"}]  # noqa: S108
    claim = cache_claim(service)
    if claim is not None:
        volumes.append({"name": CACHE_VOLUME, "persistentVolumeClaim": {"claimName": claim}})
        mounts.append({"name": CACHE_VOLUME, "mountPath": storage.mount_path})
    if model.name.startswith("pvc://"):
        source_claim = model.name.removeprefix("pvc://").partition("/")[0]
        volumes.append(
            {
                "name": SOURCE_VOLUME,
                "persistentVolumeClaim": {"claimName": source_claim, "readOnly": True},
            }
        )
        mounts.append({"name": SOURCE_VOLUME, "mountPath": MODEL_SOURCE_MOUNT, "readOnly": True})
    return volumes, mounts


def _resources(service: LLMService) -> dict[str, Any]:
    engine = service.spec.engine
    user = engine.resources
    requests = dict(user.requests or {}) if user else {}
    limits: dict[str, Any] = dict(user.limits or {}) if user else {}
    # Extended resources are set as limits; Kubernetes copies them to requests.
    limits[engine.gpu_resource_name] = engine.gpus
    resources: dict[str, Any] = {"limits": limits}
    if requests:
        resources["requests"] = requests
    return resources


def _tolerations(service: LLMService) -> list[dict[str, Any]]:
    engine = service.spec.engine
    # GPU nodes are commonly tainted with the resource name so only GPU work lands there.
    tolerations: list[dict[str, Any]] = [
        {"key": engine.gpu_resource_name, "operator": "Exists", "effect": "NoSchedule"}
    ]
    tolerations += [
        t.model_dump(by_alias=True, exclude_none=True) for t in engine.tolerations or []
    ]
    return tolerations


def _affinity(service: LLMService) -> dict[str, Any] | None:
    spread = service.spec.engine.spread_across_nodes
    term = {
        "labelSelector": {"matchLabels": naming.selector_labels(service, naming.ENGINE)},
        "topologyKey": "kubernetes.io/hostname",
    }
    if spread == "Required":
        return {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}
    if spread == "Preferred":
        return {
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 100, "podAffinityTerm": term}
                ]
            }
        }
    return None


def engine_replicas(service: LLMService) -> int:
    """The replicas to render: engine.replicas, kept within the autoscaler's bounds when it
    is enabled (the operator then applies the autoscaler's own count in its place)."""
    engine = service.spec.engine
    autoscaling = engine.autoscaling
    if not autoscaling.enabled:
        return engine.replicas
    return min(max(engine.replicas, autoscaling.min_replicas), autoscaling.max_replicas)


def _strategy(service: LLMService) -> dict[str, Any]:
    storage = service.spec.storage
    single_node_volume = storage.enabled and not set(storage.access_modes) & {
        "ReadWriteMany",
        "ReadOnlyMany",
    }
    if single_node_volume:
        return {"type": "Recreate"}
    # No surge: a surge Pod needs GPUs that a full cluster does not have.
    return {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}


def render(service: LLMService) -> list[dict[str, Any]]:
    engine = service.spec.engine
    volumes, mounts = _volumes(service)
    return render_template(
        "engine-deployment.yaml.j2",
        metadata=naming.object_meta(service, naming.engine_name(service), naming.ENGINE),
        labels=naming.labels(service, naming.ENGINE),
        selector=naming.selector_labels(service, naming.ENGINE),
        replicas=engine_replicas(service),
        strategy=_strategy(service),
        termination_grace_period_seconds=engine.termination_grace_period_seconds,
        priority_class_name=engine.priority_class_name,
        node_selector=engine.node_selector,
        tolerations=_tolerations(service),
        affinity=_affinity(service),
        image=engine.image,
        image_pull_policy=engine.image_pull_policy,
        args=engine_args(service),
        env=_env(service),
        port=naming.ENGINE_PORT,
        resources=_resources(service),
        startup_minutes=STARTUP_MINUTES,
        startup_period_seconds=STARTUP_PROBE_PERIOD_SECONDS,
        startup_failure_threshold=STARTUP_MINUTES * 60 // STARTUP_PROBE_PERIOD_SECONDS,
        volume_mounts=mounts,
        volumes=volumes,
    )
