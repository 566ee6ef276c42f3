"""The engine Deployment carries the vLLM flags and Pod settings the spec asks for."""

from __future__ import annotations

import json
from typing import Any

import pytest

from llmservice.api.validation import parse_llmservice
from llmservice.render import engine, render_all
from tests.unit.api.fixtures import MINIMAL, deep_merge


def _engine(patch: dict[str, Any]) -> dict[str, Any]:
    service = parse_llmservice(deep_merge(MINIMAL, patch))
    (deployment,) = engine.render(service)
    return deployment


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return container


def _flag(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def test_rope_scaling_becomes_hf_overrides_json() -> None:
    args = _container(
        _engine(
            {
                "spec": {
                    "model": {
                        "ropeScaling": {
                            "type": "yarn",
                            "factor": 4,
                            "originalMaxPositionEmbeddings": 32768,
                            "theta": 1e6,
                        }
                    }
                }
            }
        )
    )["args"]
    overrides = json.loads(_flag(args, "--hf-overrides"))
    assert overrides == {
        "rope_scaling": {
            "rope_type": "yarn",
            "factor": 4.0,
            "original_max_position_embeddings": 32768,
        },
        "rope_theta": 1e6,
    }
    assert "--rope-scaling" not in args


def test_served_name_and_aliases_follow_the_flag() -> None:
    args = _container(_engine({"spec": {"model": {"servedName": "chat", "aliases": ["gpt-4o"]}}}))[
        "args"
    ]
    index = args.index("--served-model-name")
    assert args[index + 1 : index + 3] == ["chat", "gpt-4o"]


def test_quantization_dtype_and_limits() -> None:
    args = _container(
        _engine({"spec": {"model": {"quantization": "awq", "dtype": "float16", "maxModelLen": 4096},
                          "engine": {"maxNumSeqs": 64, "gpuMemoryUtilization": 0.8}}})
    )["args"]  # fmt: skip
    assert _flag(args, "--quantization") == "awq"
    assert _flag(args, "--dtype") == "float16"
    assert _flag(args, "--max-model-len") == "4096"
    assert _flag(args, "--max-num-seqs") == "64"
    assert _flag(args, "--gpu-memory-utilization") == "0.8"


def test_no_quantization_flag_when_none() -> None:
    assert "--quantization" not in _container(_engine({}))["args"]


def test_tensor_parallel_smaller_than_gpus_adds_pipeline_parallel() -> None:
    args = _container(_engine({"spec": {"engine": {"gpus": 8, "tensorParallelSize": 2}}}))["args"]
    assert _flag(args, "--tensor-parallel-size") == "2"
    assert _flag(args, "--pipeline-parallel-size") == "4"


def test_hf_token_comes_from_secret_key_ref() -> None:
    env = _container(_engine({"spec": {"model": {"hfTokenSecretRef": {"name": "hf"}}}}))["env"]
    (token,) = [item for item in env if item["name"] == "HF_TOKEN"]
    assert token == {
        "name": "HF_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}},
    }


def test_probes_allow_long_model_loads() -> None:
    container = _container(_engine({}))
    startup = container["startupProbe"]
    assert startup["httpGet"]["path"] == "/health"
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 20 * 60
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"


def test_startup_probe_period_comes_from_one_constant(monkeypatch: pytest.MonkeyPatch) -> None:
    # A literal in the template would keep 10 s here and break the startup budget.
    monkeypatch.setattr(engine, "STARTUP_PROBE_PERIOD_SECONDS", 7)
    startup = _container(_engine({}))["startupProbe"]
    assert startup["periodSeconds"] == 7
    assert startup["failureThreshold"] == engine.STARTUP_MINUTES * 60 // 7


def test_shm_is_memory_backed() -> None:
    deployment = _engine({})
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}} in volumes


def test_read_write_once_cache_recreates_instead_of_surging() -> None:
    assert _engine({"spec": {"storage": {"enabled": True}}})["spec"]["strategy"] == {
        "type": "Recreate"
    }
    shared = _engine(
        {
            "spec": {
                "engine": {"replicas": 2},
                "storage": {"enabled": True, "accessModes": ["ReadWriteMany"]},
            }
        }
    )
    assert shared["spec"]["strategy"]["type"] == "RollingUpdate"
    assert shared["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0


def test_pvc_model_is_mounted_read_only_and_passed_as_path() -> None:
    deployment = _engine({"spec": {"model": {"name": "pvc://weights/llama/8b"}}})
    container = _container(deployment)
    assert _flag(container["args"], "--model") == "/model-source/llama/8b"
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    assert {
        "name": "model-source",
        "persistentVolumeClaim": {"claimName": "weights", "readOnly": True},
    } in volumes


def test_extra_args_come_last() -> None:
    args = _container(_engine({"spec": {"engine": {"extraArgs": ["--enable-prefix-caching"]}}}))[
        "args"
    ]
    assert args[-1] == "--enable-prefix-caching"


def test_children_carry_standard_labels_and_owner() -> None:
    document = deep_merge(MINIMAL, {"metadata": {"uid": "1234"}})
    for obj in render_all(parse_llmservice(document)):
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == "chat"
        assert labels["app.kubernetes.io/managed-by"] == "llmservice-operator"
        assert labels["app.kubernetes.io/part-of"] == "llmservice"
        (owner,) = obj["metadata"]["ownerReferences"]
        assert owner["controller"] is True
        assert owner["uid"] == "1234"


def _autoscaled(replicas: int, low: int, high: int) -> list[dict[str, Any]]:
    autoscaling = {"enabled": True, "minReplicas": low, "maxReplicas": high}
    patch = {"engine": {"replicas": replicas, "autoscaling": autoscaling}}
    return render_all(parse_llmservice(deep_merge(MINIMAL, {"spec": patch})))


def _named(objects: list[dict[str, Any]], kind: str, suffix: str) -> dict[str, Any] | None:
    return next(
        (o for o in objects if o["kind"] == kind and o["metadata"]["name"].endswith(suffix)),
        None,
    )


def test_autoscaled_engine_has_a_budget_and_no_surge_whatever_its_count() -> None:
    objects = _autoscaled(1, 0, 3)
    deployment = _named(objects, "Deployment", "-engine")
    assert deployment is not None
    assert deployment["spec"]["replicas"] == 1
    # A surge Pod would need GPUs a full cluster lacks; the budget never blocks a drain.
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}
    budget = _named(objects, "PodDisruptionBudget", "-engine")
    assert budget is not None
    assert budget["spec"]["maxUnavailable"] == 1
    assert budget["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    # An autoscaler that may never add a replica protects nothing.
    assert _named(_autoscaled(1, 0, 1), "PodDisruptionBudget", "-engine") is None


def test_autoscaled_starting_count_is_engine_replicas_within_the_bounds() -> None:
    def count(replicas: int, low: int, high: int) -> int:
        deployment = _named(_autoscaled(replicas, low, high), "Deployment", "-engine")
        assert deployment is not None
        return int(deployment["spec"]["replicas"])

    assert count(1, 0, 3) == 1
    assert count(0, 2, 3) == 2
    assert count(9, 1, 3) == 3
