"""The LLMService spec: what a platform engineer writes.

Every field is described, because the descriptions become `kubectl explain` output and the
README's field reference. Cross-field rules are CEL (see `schema_types.cel`), so the API
server enforces them at admission and offline validation evaluates the same text.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from llmservice.api.schema_types import (
    DNS_SUBDOMAIN_PATTERN,
    DURATION_PATTERN,
    LABEL_VALUE_PATTERN,
    QUALIFIED_NAME_PATTERN,
    AnnotationMap,
    CamelModel,
    LabelMap,
    Quantity,
    QuantityString,
    cel,
    cel_rules,
    described,
)
from llmservice.api.vllm_flags import OWNED_FLAG_SPELLINGS
from llmservice.vllm_release import VLLM_VERSION

# The image of the vLLM release the conformance suite tests (see `llmservice.vllm_release`).
DEFAULT_ENGINE_IMAGE = f"docker.io/vllm/vllm-openai:v{VLLM_VERSION}"
DEFAULT_ROUTER_IMAGE = "ghcr.io/llmservice/llmservice:0.1.0"
DEFAULT_GPU_RESOURCE = "nvidia.com/gpu"
DEFAULT_SESSION_HEADER = "X-Session-ID"

# Flags the operator sets itself, each with the field that sets it; extraArgs may not set them
# in any spelling, or the Deployment, the Services and the status would disagree with the
# running engine.
OWNED_ENGINE_FLAGS: dict[str, str] = {
    "model": "model.name",
    "served-model-name": "model.servedName and model.aliases",
    "host": "the operator (the engine listens on all addresses)",
    "port": "the operator (the Services target it)",
    "tensor-parallel-size": "engine.tensorParallelSize",
    "pipeline-parallel-size": "engine.gpus and engine.tensorParallelSize",
    "quantization": "model.quantization",
    "dtype": "model.dtype",
    "max-model-len": "model.maxModelLen",
    "gpu-memory-utilization": "engine.gpuMemoryUtilization",
    "max-num-seqs": "engine.maxNumSeqs",
    "scheduling-policy": "router.apiKeysSecretRef (priority scheduling with API keys)",
    "hf-overrides": "model.ropeScaling",
    "revision": "model.revision",
    "download-dir": "storage (HF_HOME points at the cache)",
    "otlp-traces-endpoint": "monitoring.tracing.otlpEndpoint",
}
# Environment variables the operator sets on the engine container; a second entry with the
# same name is refused by the API server's apply, so engine.env may not use them.
OPERATOR_ENGINE_ENV = (
    "VLLM_NO_USAGE_STATS",
    "DO_NOT_TRACK",
    "HF_HOME",
    "HF_TOKEN",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
)
# Mount paths the engine container already uses (shared memory, pvc:// model sources).
ENGINE_MOUNT_PATHS = ("/dev/shm", "/model-source")  # noqa: S108 - a tmpfs mount, not a file


def _spelled(name: str) -> str:
    """A flag name in a regex: '-' or '_' between words, as vLLM's parser takes either."""
    return "".join("[-_]" if c == "-" else c for c in name)


def _option_regex(option: str, shortest: str) -> str:
    """`option` and each prefix of it down to `shortest` (see `vllm_flags`)."""
    if len(option) == 2:  # a one-letter option takes its value glued on: -qawq
        return f"{option}.*"
    dashes = "--" if option.startswith("--") else "-"
    name, head = option[len(dashes) :], shortest[len(dashes) :]
    tail = ""
    for c in reversed(name[len(head) :]):
        tail = f"({_spelled(c)}{tail})?"
    # After the name comes nothing, or a character that cannot continue a flag name.
    return f"{dashes}{_spelled(head)}{tail}([^-_A-Za-z0-9].*)?"


def owned_spellings(flag: str) -> tuple[tuple[str, str], ...]:
    """The option strings of an owned flag with their shortest refused prefixes.

    A flag owned since `make vllm-flags` last ran is not in the generated table yet: it gets
    its own name and every prefix from two letters on, until the table is regenerated (the
    conformance suite fails meanwhile).
    """
    return OWNED_FLAG_SPELLINGS.get(flag, ((f"--{flag}", f"--{flag[:2]}"),))


def owned_flag_regex(flag: str) -> str:
    """An extraArgs item that sets `flag`: any option string of it (aliases too) or a prefix
    vLLM's parser takes for it or stops on, with '=V', ' V' or '.key' (vLLM's JSON field
    syntax) after it, underscores for dashes."""
    options = owned_spellings(flag)
    return "(?s)^(" + "|".join(_option_regex(o, shortest) for o, shortest in options) + ")$"


def _owned_flag_rule(flag: str, field: str) -> dict[str, str]:
    others = [o for o, _ in owned_spellings(flag) if o != f"--{flag}"]
    spellings = ", ".join(
        [f"--{flag}=...", f"--{flag.replace('-', '_')}", "abbreviations", *others]
    )
    return cel(
        f"!has(self.extraArgs) || self.extraArgs.all(a, !a.matches(r'{owned_flag_regex(flag)}'))",
        f"engine.extraArgs must not set --{flag} in any spelling ({spellings}):"
        f" it is set by {field}",
        ".extraArgs",
    )


# A Hugging Face repository id ("org/name" or "name") or a path on an existing claim.
MODEL_NAME_PATTERN = described(
    r"^(pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?/[^\s]+|[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9._-]+)?)$",
    "a Hugging Face id such as Qwen/Qwen2.5-0.5B-Instruct or a path on a claim such as"
    " pvc://models/llama-3",
)
OPENAI_MODEL_NAME_PATTERN = described(
    r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$",
    "a model name such as gpt-4o (letters, digits, '.', '_', ':', '/' and '-')",
)
HEADER_NAME_PATTERN = described(
    r"^[A-Za-z0-9][A-Za-z0-9-]*$", "an HTTP header name such as X-Session-ID"
)
# A browser origin (scheme, host, optional port; no path) or * for any.
CORS_ORIGIN_PATTERN = described(
    r"^(\*|https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?)$",
    "an origin such as https://chat.example.com or http://localhost:3000, or * for any",
)
ENV_NAME_PATTERN = described(
    r"^[-._a-zA-Z][-._a-zA-Z0-9]*$", "an environment variable name such as LOG_LEVEL"
)
# ConfigMap and Secret keys; Kubernetes also refuses "." and names starting with "..".
OBJECT_KEY_PATTERN = described(
    r"^\.?[-_a-zA-Z0-9][-._a-zA-Z0-9]*$",
    "a key such as token or keys.yaml (letters, digits, '-', '_' and '.', not starting with '..')",
)
REVISION_PATTERN = described(r"^[A-Za-z0-9._/-]+$", "a revision such as main, v1.0 or a commit id")
ABSOLUTE_PATH_PATTERN = described(r"^/[^\s]*$", "an absolute path such as /models")
IMAGE_PATTERN = described(
    r"^[^\s]+$", f"an image reference such as vllm/vllm-openai:v{VLLM_VERSION}"
)
# An OTLP/HTTP URL: a scheme, a host (with its port), then any path.
OTLP_ENDPOINT_PATTERN = described(
    r"^https?://[^\s/?#@]+(/[^\s]*)?$",
    "an http(s) URL such as http://otel-collector.monitoring:4318/v1/traces",
)
# Extended resources: a domain outside kubernetes.io (checked by a rule), '/', a name.
EXTENDED_RESOURCE_PATTERN = described(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
    r"/[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$",
    "an extended resource name such as nvidia.com/gpu (a domain, '/', then a name)",
)

Quantization = Literal[
    "none",
    "awq",
    "awq_marlin",
    "gptq",
    "gptq_marlin",
    "fp8",
    "bitsandbytes",
    "compressed-tensors",
    "gguf",
    "modelopt",
]
DType = Literal["auto", "half", "float16", "bfloat16", "float", "float32"]
RopeType = Literal["linear", "dynamic", "yarn", "longrope", "llama3"]
AccessMode = Literal["ReadWriteOnce", "ReadWriteMany", "ReadOnlyMany", "ReadWriteOncePod"]
RoutingStrategy = Literal["SessionAffinity", "LeastLoad", "RoundRobin"]
PullPolicy = Literal["Always", "IfNotPresent", "Never"]
Spread = Literal["Preferred", "Required", "None"]


ObjectKey = Annotated[str, Field(min_length=1, max_length=253, pattern=OBJECT_KEY_PATTERN)]


class SecretKeyRef(CamelModel):
    """A key of a Secret in the LLMService's namespace. Only its name is rendered; the value is
    read by the kubelet (`secretKeyRef`) or mounted as a file, never by the operator."""

    name: Annotated[str, Field(max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)] = Field(
        description="Name of the Secret."
    )
    key: ObjectKey = Field(description="Key inside the Secret.")


class ConfigMapKeyRef(CamelModel):
    """A key of a ConfigMap in the LLMService's namespace, read by the kubelet
    (`configMapKeyRef`), never by the operator."""

    name: Annotated[str, Field(max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)] = Field(
        description="Name of the ConfigMap."
    )
    key: ObjectKey = Field(description="Key inside the ConfigMap.")


class HFTokenSecretRef(SecretKeyRef):
    """The Hugging Face token for gated models, passed to the engine as `HF_TOKEN`."""

    key: ObjectKey = Field(default="token", description="Key inside the Secret holding the token.")


class RopeScaling(CamelModel):
    """RoPE scaling to serve a context longer than the model was trained on. Rendered as
    `--hf-overrides '{"rope_scaling": ...}'`, since current vLLM has no `--rope-scaling` flag."""

    model_config = CamelModel.model_config | {
        "json_schema_extra": cel_rules(
            cel("self.factor > 1.0", "ropeScaling.factor must be greater than 1", ".factor"),
            cel(
                "!(self.type in ['yarn', 'longrope', 'llama3', 'dynamic'])"
                " || has(self.originalMaxPositionEmbeddings)",
                "ropeScaling.originalMaxPositionEmbeddings is required for the"
                " yarn, longrope, llama3 and dynamic types",
                ".originalMaxPositionEmbeddings",
            ),
        )
    }

    type: RopeType = Field(description="RoPE scaling method (`rope_type` in the model config).")
    factor: Annotated[float, Field(le=64)] = Field(
        description="Scaling factor: the new context is about this many times the original."
    )
    original_max_position_embeddings: Annotated[int, Field(ge=128, le=1_048_576)] | None = Field(
        default=None, description="Context length the model was trained with."
    )
    theta: Annotated[float, Field(gt=0, le=1e9)] | None = Field(
        default=None, description="Optional RoPE base frequency (`rope_theta`)."
    )


class ModelSpec(CamelModel):
    """Which model to serve and how vLLM loads it."""

    model_config = CamelModel.model_config | {
        "json_schema_extra": cel_rules(
            cel(
                "!has(self.ropeScaling) || !has(self.maxModelLen)"
                " || !has(self.ropeScaling.originalMaxPositionEmbeddings)"
                " || double(self.maxModelLen)"
                " <= double(self.ropeScaling.originalMaxPositionEmbeddings)"
                " * self.ropeScaling.factor",
                "model.maxModelLen must not exceed"
                " ropeScaling.originalMaxPositionEmbeddings * ropeScaling.factor",
                ".maxModelLen",
            ),
            cel(
                "!has(self.servedName) || !has(self.aliases) || !(self.servedName in self.aliases)",
                "model.aliases must not repeat model.servedName",
                ".aliases",
            ),
            cel(
                "!self.name.startsWith('pvc://') || !has(self.hfTokenSecretRef)",
                "model.hfTokenSecretRef is only used for Hugging Face models, not pvc:// paths",
                ".hfTokenSecretRef",
            ),
        )
    }

    name: Annotated[str, Field(max_length=256, pattern=MODEL_NAME_PATTERN)] = Field(
        description="Hugging Face repository id (`org/model`) or `pvc://CLAIM/PATH` for a model"
        " already on a PersistentVolumeClaim in this namespace."
    )
    revision: Annotated[str, Field(max_length=128, pattern=REVISION_PATTERN)] | None = Field(
        default=None, description="Model revision: a branch, tag or commit id."
    )
    served_name: Annotated[str, Field(max_length=128, pattern=OPENAI_MODEL_NAME_PATTERN)] | None = (
        Field(default=None, description="Model name clients send; defaults to `name`.")
    )
    aliases: (
        Annotated[
            list[Annotated[str, Field(max_length=128, pattern=OPENAI_MODEL_NAME_PATTERN)]],
            Field(max_length=16, json_schema_extra={"x-kubernetes-list-type": "set"}),
        ]
        | None
    ) = Field(
        default=None,
        description="Extra model names the router accepts and rewrites to the served name"
        " (for example `gpt-3.5-turbo` for clients that hard-code it).",
    )
    accept_any_model_name: bool = Field(
        default=False,
        description="Whether the router takes any model name a request sends as the served"
        " model's and rewrites it to the served name, for clients that hard-code model names"
        " they cannot change; off, a name that is neither the served name nor an alias is a"
        " 404 `model_not_found`.",
    )
    quantization: Quantization = Field(
        default="none", description="Weight quantization method (`--quantization`)."
    )
    dtype: DType = Field(default="auto", description="Activation and weight data type (`--dtype`).")
    max_model_len: Annotated[int, Field(ge=128, le=10_000_000)] | None = Field(
        default=None, description="Maximum context length in tokens (`--max-model-len`)."
    )
    rope_scaling: RopeScaling | None = Field(
        default=None, description="RoPE scaling for contexts beyond the trained length."
    )
    hf_token_secret_ref: HFTokenSecretRef | None = Field(
        default=None, description="Secret with a Hugging Face token, for gated models."
    )


class EnvSource(CamelModel):
    """Where an environment variable's value comes from."""

    model_config = CamelModel.model_config | {
        "json_schema_extra": cel_rules(
            cel(
                "has(self.secretKeyRef) != has(self.configMapKeyRef)",
                "valueFrom needs exactly one of secretKeyRef and configMapKeyRef",
            )
        )
    }

    secret_key_ref: SecretKeyRef | None = Field(default=None, description="A Secret key.")
    config_map_key_ref: ConfigMapKeyRef | None = Field(default=None, description="A ConfigMap key.")


class EnvVar(CamelModel):
    """One environment variable of the engine container."""

    model_config = CamelModel.model_config | {
        "json_schema_extra": cel_rules(
            cel(
                "has(self.value) != has(self.valueFrom)",
                "env needs exactly one of value and valueFrom",
            )
        )
    }

    name: Annotated[str, Field(min_length=1, max_length=128, pattern=ENV_NAME_PATTERN)] = Field(
        description="Variable name."
    )
    value: Annotated[str, Field(max_length=4096)] | None = Field(
        default=None, description="Literal value."
    )
    value_from: EnvSource | None = Field(
        default=None, description="Value from a Secret or ConfigMap."
    )


class Toleration(CamelModel):
    """A toleration for node taints, as in a Pod spec."""

    # The Pod validation's own rules (ValidateTolerations), so a toleration admitted here is
    # one the API server accepts in the engine Deployment.
    model_config = CamelModel.model_config | {
        "json_schema_extra": cel_rules(
            cel(
                "has(self.key) || self.operator == 'Exists'",
                "a toleration without key must use operator Exists (it then matches every taint)",
                ".operator",
            ),
            cel(
                "self.operator != 'Exists' || !has(self.value) || self.value == ''",
                "a toleration with operator Exists must not have a value",
                ".value",
            ),
            cel(
                "!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
                "tolerationSeconds is only allowed with effect NoExecute",
                ".tolerationSeconds",
            ),
        )
    }

    key: Annotated[str, Field(max_length=253, pattern=QUALIFIED_NAME_PATTERN)] | None = Field(
        default=None, description="Taint key; empty with operator Exists matches every taint."
    )
    operator: Literal["Exists", "Equal"] = Field(default="Equal", description="Match operator.")
    value: Annotated[str, Field(max_length=63, pattern=LABEL_VALUE_PATTERN)] | None = Field(
        default=None, description="Value to match with operator Equal."
    )
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect to match; empty matches all."
    )
    toleration_seconds: Annotated[int, Field(ge=0, le=86400)] | None = Field(
        default=None, description="For NoExecute: how long the Pod stays after the taint appears."
    )


class ResourceRequirements(CamelModel):
    """CPU and memory for a container. GPUs are set by `engine.gpus`, not here."""

    model_config = CamelModel.model_config | {
        "json_schema_extra": cel_rules(
            cel(
                "!has(self.limits)"
                " || self.limits.all(k, k in ['cpu', 'memory', 'ephemeral-storage'])",
                "resources.limits may only name cpu, memory and ephemeral-storage;"
                " GPUs come from engine.gpus",
                ".limits",
            ),
            cel(
                "!has(self.requests)"
                " || self.requests.all(k, k in ['cpu', 'memory', 'ephemeral-storage'])",
                "resources.requests may only name cpu, memory and ephemeral-storage;"
                " GPUs come from engine.gpus",
                ".requests",
            ),
            cel(
                "!has(self.requests) || self.requests.all(k,"
                " !isQuantity(string(self.requests[k]))"
                " || !quantity(string(self.requests[k])).isLessThan(quantity('0')))",
                "resources.requests must not be negative",
                ".requests",
            ),
            cel(
                "!has(self.limits) || self.limits.all(k,"
                " !isQuantity(string(self.limits[k]))"
                " || quantity(string(self.limits[k])).isGreaterThan(quantity('0')))",
                "resources.limits must be greater than zero",
                ".limits",
            ),
            cel(
                "!has(self.requests) || !has(self.limits) || self.requests.all(k,"
                " !(k in self.limits) || !isQuantity(string(self.requests[k]))"
                " || !isQuantity(string(self.limits[k]))"
                " || !quantity(string(self.requests[k]))"
                ".isGreaterThan(quantity(string(self.limits[k]))))",
                "resources.requests must not exceed resources.limits",
                ".requests",
            ),
        )
    }

    requests: Annotated[dict[str, Quantity], Field(max_length=3)] | None = Field(
        default=None, description="Minimum resources the scheduler reserves."
    )
    limits: Annotated[dict[str, Quantity], Field(max_length=3)] | None = Field(
        default=None, description="Maximum resources the container may use."
    )


AutoscalingMetric = Literal["InFlightRequests", "KVCacheUsage"]
MAX_STABILIZATION_SECONDS = 3600  # as the HorizontalPodAutoscaler allows
MAX_IDLE_SECONDS = 7 * 24 * 3600


class AutoscalingSpec(CamelModel):
    """The operator's own autoscaler of the engine replicas (HorizontalPodAutoscaler rules)."""

    model_config = CamelModel.model_config | {
        "json_schema_extra": cel_rules(
            cel(
                "self.minReplicas <= self.maxReplicas",
                "engine.autoscaling.minReplicas must not exceed engine.autoscaling.maxReplicas",
                ".minReplicas",
            ),
            cel(
                "self.metric != 'KVCacheUsage' || self.targetPerReplica <= 1.0",
                "engine.autoscaling.targetPerReplica must be at most 1 with metric KVCacheUsage"
                " (a fraction of the KV cache, such as 0.7)",
                ".targetPerReplica",
            ),
        )
    }

    enabled: bool = Field(
        default=False,
        description="Let the operator set the engine replicas from the load; engine.replicas"
        " is then only the starting count.",
    )
    min_replicas: Annotated[int, Field(ge=0, le=64)] = Field(
        default=1,
        description="Fewest engine replicas. 0 lets an idle service scale to zero after"
        " scaleToZeroAfterIdleSeconds; load never scales below 1 otherwise.",
    )
    max_replicas: Annotated[int, Field(ge=1, le=64)] = Field(
        default=4, description="Most engine replicas."
    )
    metric: AutoscalingMetric = Field(
        default="InFlightRequests",
        description="Load per replica: InFlightRequests (requests the routers have on the"
        " engines plus those waiting in their queues, from the router Pods' metrics) or"
        " KVCacheUsage (the engines' mean KV-cache usage, 0 to 1: follows long contexts that"
        " request counts miss).",
    )
    target_per_replica: Annotated[float, Field(gt=0, le=100000)] = Field(
        default=8.0,
        description="Target value of the metric per replica; replicas = ceil(current x"
        " value / target), unchanged within 10% of the target.",
    )
    scale_up_stabilization_seconds: Annotated[int, Field(ge=0, le=MAX_STABILIZATION_SECONDS)] = (
        Field(
            default=0,
            description="Scale up only to the lowest count recommended within this window.",
        )
    )
    scale_down_stabilization_seconds: Annotated[int, Field(ge=0, le=MAX_STABILIZATION_SECONDS)] = (
        Field(
            default=300,
            description="Scale down only to the highest count recommended within this window.",
        )
    )
    scale_to_zero_after_idle_seconds: Annotated[int, Field(ge=10, le=MAX_IDLE_SECONDS)] = Field(
        default=600,
        description="With minReplicas 0: seconds without any request (none arriving, in"
        " flight or queued at the routers) before the engine goes to zero replicas.",
    )
    cold_start_timeout_seconds: Annotated[int, Field(ge=1, le=3600)] = Field(
        default=300,
        description="With minReplicas 0: how long the routers hold a request that arrives"
        " while no engine replica is ready (at zero, the operator scales to one on seeing it)"
        " before answering 503 with Retry-After. Counts within router.timeouts.totalSeconds.",
    )


class EngineSpec(CamelModel):
    """The vLLM engine replicas."""

    model_config = CamelModel.model_config | {
        "json_schema_extra": cel_rules(
            cel(
                "!has(self.tensorParallelSize) || self.gpus % self.tensorParallelSize == 0",
                "engine.tensorParallelSize must divide engine.gpus"
                " (the rest becomes pipeline parallelism)",
                ".tensorParallelSize",
            ),
            *(_owned_flag_rule(flag, field) for flag, field in OWNED_ENGINE_FLAGS.items()),
            cel(
                "!has(self.env) || self.env.all(e, self.env.exists_one(f, f.name == e.name))",
                "engine.env names must be unique",
                ".env",
            ),
            cel(
                "!has(self.env) || self.env.all(e, !(e.name in "
                + repr(list(OPERATOR_ENGINE_ENV))
                + "))",
                "engine.env must not set "
                + ", ".join(OPERATOR_ENGINE_ENV)
                + ": the operator sets them (HF_TOKEN from model.hfTokenSecretRef,"
                " HF_HOME from storage, OTEL_EXPORTER_OTLP_TRACES_PROTOCOL from"
                " monitoring.tracing)",
                ".env",
            ),
            cel(
                "!self.gpuResourceName.contains('kubernetes.io/')",
                "engine.gpuResourceName must be an extended resource outside the kubernetes.io"
                " domain, such as nvidia.com/gpu",
                ".gpuResourceName",
            ),
            cel(
                "!isQuantity(self.shmSize) || quantity(self.shmSize).isGreaterThan(quantity('0'))",
                "engine.shmSize must be greater than zero",
                ".shmSize",
            ),
        )
    }

    image: Annotated[str, Field(min_length=1, max_length=512, pattern=IMAGE_PATTERN)] = Field(
        default=DEFAULT_ENGINE_IMAGE, description="vLLM OpenAI-compatible server image."
    )
    image_pull_policy: PullPolicy = Field(default="IfNotPresent", description="Image pull policy.")
    replicas: Annotated[int, Field(ge=0, le=64)] = Field(
        default=1,
        description="Number of engine replicas; each holds a full copy of the model. The"
        " scale subresource sets it (`kubectl scale`, a HorizontalPodAutoscaler, KEDA).",
    )
    gpus: Annotated[int, Field(ge=1, le=16)] = Field(
        default=1, description="GPUs per replica (the GPU resource limit of each engine Pod)."
    )
    gpu_resource_name: Annotated[str, Field(max_length=200, pattern=EXTENDED_RESOURCE_PATTERN)] = (
        Field(default=DEFAULT_GPU_RESOURCE, description="Extended resource name of the GPUs.")
    )
    tensor_parallel_size: Annotated[int, Field(ge=1, le=16)] | None = Field(
        default=None,
        description="Tensor parallel size; defaults to `gpus`. When smaller, it must divide"
        " `gpus` and the quotient becomes the pipeline parallel size.",
    )
    gpu_memory_utilization: Annotated[float, Field(ge=0.1, le=0.99)] = Field(
        default=0.9, description="Fraction of GPU memory vLLM may use (`--gpu-memory-utilization`)."
    )
    max_num_seqs: Annotated[int, Field(ge=1, le=4096)] = Field(
        default=256, description="Maximum sequences batched at once (`--max-num-seqs`)."
    )
    extra_args: (
        Annotated[list[Annotated[str, Field(max_length=1024)]], Field(max_length=64)] | None
    ) = Field(
        default=None,
        description="Further vLLM flags, appended verbatim, one argument per item. Flags that"
        " typed fields set (--model, --max-model-len, -tp, ...) are refused in any spelling.",
    )
    env: Annotated[list[EnvVar], Field(max_length=64)] | None = Field(
        default=None,
        description="Extra environment variables of the engine container; names are unique and"
        " exclude those the operator sets (" + ", ".join(OPERATOR_ENGINE_ENV) + ").",
    )
    resources: ResourceRequirements | None = Field(
        default=None, description="CPU and memory of the engine container."
    )
    node_selector: LabelMap | None = Field(default=None, description="Node labels to require.")
    tolerations: Annotated[list[Toleration], Field(max_length=32)] | None = Field(
        default=None,
        description="Tolerations in addition to the one for the GPU resource's taint.",
    )
    spread_across_nodes: Spread = Field(
        default="Preferred",
        description="Place replicas on different nodes: Preferred (best effort),"
        " Required (stay Pending rather than share a node) or None.",
    )
    priority_class_name: (
        Annotated[str, Field(max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)] | None
    ) = Field(default=None, description="PriorityClass of the engine Pods.")
    termination_grace_period_seconds: Annotated[int, Field(ge=0, le=3600)] = Field(
        default=120, description="Time for in-flight requests to finish when a Pod stops."
    )
    shm_size: QuantityString = Field(
        default="16Gi", description="Size of the memory-backed /dev/shm (NCCL needs it)."
    )
    autoscaling: AutoscalingSpec = Field(
        default_factory=AutoscalingSpec,
        description="Set the replicas from the load; `kubectl scale` and external"
        " autoscalers drive engine.replicas while this is disabled.",
    )


def _default_access_modes() -> list[AccessMode]:
    return ["ReadWriteOnce"]


class StorageSpec(CamelModel):
    """A PersistentVolumeClaim that caches downloaded weights across restarts."""

    model_config = CamelModel.model_config | {
        "json_schema_extra": cel_rules(
            cel(
                "!(self.enabled && has(self.existingClaim))",
                "storage.existingClaim and storage.enabled are exclusive:"
                " use one claim the operator creates, or one that exists",
                ".existingClaim",
            ),
            cel(
                "!isQuantity(self.size) || quantity(self.size).isGreaterThan(quantity('0'))",
                "storage.size must be greater than zero",
                ".size",
            ),
            cel(
                "!self.mountPath.matches(r'^(" + "|".join(ENGINE_MOUNT_PATHS) + ")/*$')",
                "storage.mountPath must not be "
                + " or ".join(ENGINE_MOUNT_PATHS)
                + ": the engine container mounts shared memory and pvc:// models there",
                ".mountPath",
            ),
        )
    }

    enabled: bool = Field(
        default=False, description="Create a claim `<name>-models` for the cache."
    )
    size: QuantityString = Field(
        default="100Gi", description="Requested size of the created claim."
    )
    storage_class_name: (
        Annotated[str, Field(max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)] | None
    ) = Field(
        default=None,
        description="StorageClass of the created claim; the cluster default when empty."
        " Immutable once set.",
        json_schema_extra=cel_rules(
            cel("self == oldSelf", "storage.storageClassName is immutable")
        ),
    )
    access_modes: Annotated[
        list[AccessMode],
        Field(min_length=1, max_length=4, json_schema_extra={"x-kubernetes-list-type": "set"}),
    ] = Field(
        default_factory=_default_access_modes,
        description="Access modes of the created claim. More than one engine replica needs"
        " ReadWriteMany: a ReadWriteOnce volume cannot follow replicas onto several nodes.",
    )
    existing_claim: Annotated[str, Field(max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)] | None = (
        Field(default=None, description="Use this existing claim for the cache instead.")
    )
    mount_path: Annotated[str, Field(max_length=256, pattern=ABSOLUTE_PATH_PATTERN)] = Field(
        default="/models", description="Where the cache is mounted; `HF_HOME` points here."
    )


class Timeouts(CamelModel):
    """Router timeouts towards the engine."""

    model_config = CamelModel.model_config | {
        "json_schema_extra": cel_rules(
            cel(
                "self.connectSeconds <= self.firstByteSeconds"
                " && self.firstByteSeconds <= self.totalSeconds",
                "router.timeouts must satisfy connectSeconds <= firstByteSeconds <= totalSeconds",
            ),
        )
    }

    connect_seconds: Annotated[float, Field(gt=0, le=60)] = Field(
        default=5, description="Time to open a connection to a replica."
    )
    first_byte_seconds: Annotated[float, Field(gt=0, le=3600)] = Field(
        default=120,
        description="Time until a replica sends response headers (covers queueing and prefill).",
    )
    idle_seconds: Annotated[float, Field(gt=0, le=3600)] = Field(
        default=60,
        description="Longest silence between two chunks of a streamed response. Noticed up"
        " to two checks late: the router checks every 1/32 of the shortest of the first"
        " byte, idle and total limits, at least once a second.",
    )
    total_seconds: Annotated[float, Field(gt=0, le=86400)] = Field(
        default=1800, description="Longest time for a whole request."
    )


class AdmissionSpec(CamelModel):
    """What the router lets through to the engines, and when."""

    max_in_flight_per_replica: Annotated[int, Field(ge=1, le=4096)] | None = Field(
        default=None,
        description="Most requests each router replica has in flight on one engine replica at"
        " once; the rest wait in the router's queue. Defaults to engine.maxNumSeqs, so the"
        " engine batches everything it is sent and the router, not the engine, decides who"
        " goes next. The cap is per router replica.",
    )
    max_queued: Annotated[int, Field(ge=0, le=100_000)] = Field(
        default=1000,
        description="Most requests waiting in one router replica's queue, over all keys; the"
        " next one gets 429 (queue_full). 0: no queue, a request without a free slot gets 429.",
    )
    queue_timeout_seconds: Annotated[float, Field(gt=0, le=3600)] = Field(
        default=30,
        description="Longest wait in the queue; the request then gets 429 (queue_timeout).",
    )
    requests_per_minute: Annotated[int, Field(ge=1, le=10_000_000)] | None = Field(
        default=None,
        description="Requests per minute one router replica accepts over all keys (a token"
        " bucket bursting to one minute's worth); more get 429 (global_rate_limit). Unset: no"
        " global limit. Per-key limits are in the API keys file.",
    )
    min_tokens_per_second_per_request: Annotated[float, Field(gt=0, le=100_000)] | None = Field(
        default=None,
        description="Throughput gate: no new request goes to an engine replica while the decode"
        " rate each of its running requests gets (from the engine's generation token counter)"
        " is below this many tokens per second; requests wait in the queue meanwhile. Unset:"
        " no gate.",
    )


class CorsSpec(CamelModel):
    """Cross-origin requests from browser front ends; off without allowedOrigins."""

    allowed_origins: Annotated[
        list[Annotated[str, Field(max_length=253, pattern=CORS_ORIGIN_PATTERN)]],
        Field(max_length=64, json_schema_extra={"x-kubernetes-list-type": "set"}),
    ] = Field(
        default_factory=list,
        description="Origins whose scripts may call the router, or `*` for any. Their"
        " preflights (OPTIONS) are answered 204 without an API key, and every response,"
        " errors and streams included, carries Access-Control-Allow-Origin and exposes the"
        " session and request id headers, Retry-After and the x-ratelimit-* headers. Empty:"
        " no CORS headers at all, and browsers refuse cross-origin calls.",
    )
    allowed_headers: Annotated[
        list[Annotated[str, Field(max_length=64, pattern=HEADER_NAME_PATTERN)]],
        Field(min_length=1, max_length=32, json_schema_extra={"x-kubernetes-list-type": "set"}),
    ] = Field(
        default_factory=lambda: ["Authorization", "Content-Type", DEFAULT_SESSION_HEADER,
                                 "X-Request-ID"],
        description="Request headers a browser may send (Access-Control-Allow-Headers); list"
        " `sessionHeader` here when it is not the default.",
    )  # fmt: skip
    max_age_seconds: Annotated[int, Field(ge=0, le=86_400)] | None = Field(
        default=None,
        description="How long a browser may cache a preflight's answer (Access-Control-Max-Age)."
        " Unset: the browser's default (5 seconds by the Fetch standard).",
    )


class RouterSpec(CamelModel):
    """The session-affinity router in front of the engine replicas."""

    model_config = CamelModel.model_config | {
        "json_schema_extra": cel_rules(
            cel(
                "self.admission.queueTimeoutSeconds < self.timeouts.totalSeconds",
                "router.admission.queueTimeoutSeconds must be shorter than"
                " router.timeouts.totalSeconds, which also counts the time in the queue",
                ".admission.queueTimeoutSeconds",
            ),
        )
    }

    replicas: Annotated[int, Field(ge=1, le=32)] = Field(
        default=2,
        description="Router replicas. With SessionAffinity and more than one, they tell each"
        " other where they place sessions (UDP port 8082 between router Pods), so a session's"
        " turns through any router replica meet the same engine replica.",
    )
    image: Annotated[str, Field(min_length=1, max_length=512, pattern=IMAGE_PATTERN)] = Field(
        default=DEFAULT_ROUTER_IMAGE, description="Router image."
    )
    image_pull_policy: PullPolicy = Field(default="IfNotPresent", description="Image pull policy.")
    strategy: RoutingStrategy = Field(
        default="SessionAffinity",
        description="SessionAffinity: each session (the session header, else the `user`"
        " field, else the conversation's system and first user messages) stays on the"
        " replica that served it, and new sessions are placed on a hash ring so that session"
        " counts stay even; LeastLoad; RoundRobin.",
    )
    session_header: Annotated[
        str, Field(min_length=1, max_length=64, pattern=HEADER_NAME_PATTERN)
    ] = Field(
        default=DEFAULT_SESSION_HEADER, description="Request header carrying the session key."
    )
    load_bound: Annotated[float, Field(ge=1.0, le=4.0)] = Field(
        default=2.0,
        description="SessionAffinity: a session leaves the replica holding its cache only"
        " while that replica has more than this multiple of the mean requests in flight (per"
        " router replica), and no new session is placed there; a moved session stays where"
        " it moved.",
    )
    retries: Annotated[int, Field(ge=0, le=5)] = Field(
        default=2, description="Attempts on other replicas for failures before the first byte."
    )
    timeouts: Timeouts = Field(default_factory=Timeouts, description="Timeouts towards the engine.")
    max_request_bytes: Annotated[int, Field(ge=1024, le=67_108_864)] = Field(
        default=8_388_608, description="Largest request body accepted."
    )
    api_keys_secret_ref: SecretKeyRef | None = Field(
        default=None,
        description="Secret key holding the router's API keys, mounted into the router as a"
        " file. The file is YAML: an optional `defaults:` (any of `priority`, `maxQueued`,"
        " `requestsPerMinute`, `tokensPerMinute`) and `keys:`, a list of entries with a"
        " unique `name` (shown in logs and metrics instead of the key), a unique `key` (16"
        " to 256 characters) that clients send as `Authorization: Bearer <key>`, and any of"
        " the same four fields; a key's omitted field comes from `defaults`, else means no"
        " limit of its own (priority 1). Priorities and limits are whole numbers of at"
        " least 1; `priority` is a weight (a higher one gets a larger share of dispatch),"
        " `maxQueued` the key's requests waiting at once. Requests without a known key get"
        " 401. Changes to the Secret are applied by the running routers without a restart;"
        " a changed file they cannot parse is rejected (they keep the last good keys, log"
        " why and `RouterAvailable` says so), while at start it stops the router. Without"
        " it the router is open.",
    )
    admission: AdmissionSpec = Field(
        default_factory=AdmissionSpec,
        description="Concurrency caps, the request queue, rate limits and the throughput gate."
        " With apiKeysSecretRef set, the engines also run vLLM's priority scheduling and the"
        " router sets each request's `priority` from its key's priority (a client cannot"
        " choose its own).",
    )
    forward_authorization: bool = Field(
        default=False, description="Pass the client's Authorization header on to the engine."
    )
    resources: ResourceRequirements | None = Field(
        default=None, description="CPU and memory of the router container."
    )
    cors: CorsSpec = Field(
        default_factory=CorsSpec, description="CORS for browser front ends; off by default."
    )


class TLSSpec(CamelModel):
    """TLS for the Ingress."""

    secret_name: Annotated[str, Field(max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)] = Field(
        description="Secret of type kubernetes.io/tls with the certificate for `ingress.host`."
    )


class IngressSpec(CamelModel):
    """An Ingress that exposes the router outside the cluster."""

    model_config = CamelModel.model_config | {
        "json_schema_extra": cel_rules(
            cel(
                "!self.enabled || has(self.host)",
                "ingress.host is required when ingress is enabled",
                ".host",
            ),
            cel(
                "!has(self.host) || !self.host.matches('^[0-9.]+$')",
                "ingress.host must be a host name, not an IP address",
                ".host",
            ),
            # The Ingress validation refuses these in a Prefix path.
            cel(
                "!self.path.contains('//') && !self.path.contains('/./')"
                " && !self.path.contains('/../') && !self.path.contains('%2f')"
                " && !self.path.contains('%2F') && !self.path.endsWith('/.')"
                " && !self.path.endsWith('/..')",
                "ingress.path must be a plain path such as /v1: no //, /./, /../ or %2F,"
                " and no trailing /. or /..",
                ".path",
            ),
        )
    }

    enabled: bool = Field(default=False, description="Create the Ingress `<name>`.")
    class_name: Annotated[str, Field(max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)] | None = Field(
        default=None, description="IngressClass; the cluster default when empty."
    )
    host: Annotated[str, Field(max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)] | None = Field(
        default=None, description="Host name clients use."
    )
    path: Annotated[str, Field(max_length=256, pattern=ABSOLUTE_PATH_PATTERN)] = Field(
        default="/", description="Path prefix routed to the router."
    )
    tls: TLSSpec | None = Field(default=None, description="Terminate TLS with this certificate.")
    annotations: AnnotationMap | None = Field(
        default=None, description="Annotations for the ingress controller."
    )


class AlertThresholds(CamelModel):
    """When the alerts of the PrometheusRule fire; each is described with its alert."""

    time_to_first_token_seconds: Annotated[float, Field(gt=0, le=3600)] = Field(
        default=2.0,
        description="LLMServiceTimeToFirstTokenHigh: the 95th percentile of the engines' time"
        " to first token, in seconds.",
    )
    engine_queued_requests: Annotated[int, Field(ge=1, le=100_000)] = Field(
        default=10,
        description="LLMServiceEngineQueueHigh: requests waiting in one engine replica's queue.",
    )
    router_queued_requests: Annotated[int, Field(ge=1, le=100_000)] = Field(
        default=50,
        description="LLMServiceRouterQueueHigh: requests waiting in the router's queue (all"
        " router replicas together).",
    )
    kv_cache_usage: Annotated[float, Field(gt=0, le=1)] = Field(
        default=0.95,
        description="LLMServiceKVCacheSaturated: fraction of one replica's KV cache in use.",
    )
    preemptions_per_second: Annotated[float, Field(gt=0, le=10_000)] = Field(
        default=0.1,
        description="LLMServicePreemptions: sequences preempted per second by one replica.",
    )
    router_error_ratio: Annotated[float, Field(gt=0, le=1)] = Field(
        default=0.05,
        description="LLMServiceRouterServerErrors: fraction of the router's answers that are 5xx.",
    )
    router_rejection_ratio: Annotated[float, Field(gt=0, le=1)] = Field(
        default=0.1,
        description="LLMServiceRouterRejections: requests the router rejects (rate limits, full"
        " queues, queue timeouts) per request answered.",
    )
    gpu_memory_usage: Annotated[float, Field(gt=0, le=1)] = Field(
        default=0.97,
        description="LLMServiceGPUMemoryNearFull: fraction of one GPU's memory in use (DCGM"
        " exporter). vLLM reserves engine.gpuMemoryUtilization of each GPU at start, so keep"
        " this above it.",
    )


class PrometheusRuleSpec(CamelModel):
    """Alerts on the LLMService's metrics, as a Prometheus Operator PrometheusRule."""

    enabled: bool = Field(
        default=True,
        description="Create the PrometheusRule `<name>-alerts` when the Prometheus Operator CRD"
        " is installed; otherwise the MonitoringConfigured condition says why not.",
    )
    for_: Annotated[str, Field(max_length=16, pattern=DURATION_PATTERN)] = Field(
        default="5m",
        alias="for",
        description="How long a threshold must be crossed before its alert fires.",
    )
    unavailable_for: Annotated[str, Field(max_length=16, pattern=DURATION_PATTERN)] = Field(
        default="15m",
        description="How long engine replicas may be unavailable, or the LLMService not Ready,"
        " before an alert fires; longer than a model takes to load.",
    )
    alert_labels: LabelMap | None = Field(
        default=None,
        description="Extra labels on every alert (for Alertmanager routing, e.g. team).",
    )
    thresholds: AlertThresholds = Field(
        default_factory=AlertThresholds, description="Alert thresholds."
    )


class TracingSpec(CamelModel):
    """OpenTelemetry traces of requests: a span per request from the router and the engine."""

    otlp_endpoint: Annotated[str, Field(max_length=2048, pattern=OTLP_ENDPOINT_PATTERN)] | None = (
        Field(
            default=None,
            description="The OTLP/HTTP traces URL of a collector, used as it is (for example"
            " http://otel-collector.monitoring:4318/v1/traces). When set, the router exports a"
            " span per proxied request and the engines get vLLM's --otlp-traces-endpoint (over"
            " OTLP/HTTP), so one trace covers the router and the engine. Unset: no tracing.",
        )
    )
    sampling_ratio: float = Field(
        default=1.0,
        ge=0.0,
        le=1.0,
        description="The share of new traces the router keeps (0 to 1); a request whose"
        " client sent a traceparent follows that trace's sampled flag.",
    )


class MonitoringSpec(CamelModel):
    """Prometheus scraping of engine and router metrics, alerts on them, and traces."""

    service_monitor: bool = Field(
        default=True,
        description="Create ServiceMonitors when the Prometheus Operator CRD is installed;"
        " otherwise the MonitoringConfigured condition says why not.",
    )
    interval: Annotated[str, Field(max_length=16, pattern=DURATION_PATTERN)] = Field(
        default="30s", description="Scrape interval."
    )
    labels: LabelMap | None = Field(
        default=None,
        description="Extra labels on the ServiceMonitors and the PrometheusRule (for Prometheus"
        " selectors).",
    )
    prometheus_rule: PrometheusRuleSpec = Field(
        default_factory=PrometheusRuleSpec, description="Alerts."
    )
    tracing: TracingSpec = Field(
        default_factory=TracingSpec, description="Request traces (OpenTelemetry, OTLP/HTTP)."
    )


class NetworkPolicySpec(CamelModel):
    """Who may reach the engine replicas directly, and the routers' peer port."""

    enabled: bool = Field(
        default=True,
        description="Allow engine traffic only from the router, the operator and monitoring,"
        " and the router's peer port (UDP 8082, with several router replicas) only from the"
        " other router Pods.",
    )
    monitoring_namespace_labels: LabelMap = Field(
        default_factory=lambda: {"kubernetes.io/metadata.name": "monitoring"},
        description="Labels of the namespaces whose Pods may scrape the engine's metrics.",
    )


class LLMServiceSpec(CamelModel):
    """Desired state: one model served by GPU engine replicas behind a router."""

    model_config = CamelModel.model_config | {
        "json_schema_extra": cel_rules(
            cel(
                "!has(self.storage) || !has(self.engine) || !self.storage.enabled"
                " || self.engine.replicas <= 1"
                " || 'ReadWriteMany' in self.storage.accessModes",
                "storage.accessModes must include ReadWriteMany when engine.replicas > 1:"
                " a ReadWriteOnce claim cannot be shared by replicas on different nodes",
                ".storage.accessModes",
            ),
            cel(
                "!has(self.storage) || !has(self.engine) || !self.storage.enabled"
                " || !self.engine.autoscaling.enabled || self.engine.autoscaling.maxReplicas <= 1"
                " || 'ReadWriteMany' in self.storage.accessModes",
                "engine.autoscaling.maxReplicas must be 1 unless storage.accessModes includes"
                " ReadWriteMany: a ReadWriteOnce claim cannot be shared by replicas on"
                " different nodes",
                ".engine.autoscaling.maxReplicas",
            ),
            cel(
                "!has(self.storage) || !self.model.name.startsWith('pvc://')"
                " || !self.storage.enabled",
                "storage.enabled cannot be combined with a pvc:// model.name:"
                " the model is already on a claim",
                ".storage.enabled",
            ),
        )
    }

    model: ModelSpec = Field(description="The model to serve.")
    engine: EngineSpec = Field(default_factory=EngineSpec, description="The vLLM engine replicas.")
    storage: StorageSpec = Field(default_factory=StorageSpec, description="Model cache volume.")
    router: RouterSpec = Field(default_factory=RouterSpec, description="The router.")
    ingress: IngressSpec = Field(default_factory=IngressSpec, description="External access.")
    monitoring: MonitoringSpec = Field(default_factory=MonitoringSpec, description="Metrics.")
    network_policy: NetworkPolicySpec = Field(
        default_factory=NetworkPolicySpec, description="Engine NetworkPolicy."
    )
