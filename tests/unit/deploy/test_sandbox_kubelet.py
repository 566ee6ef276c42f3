"""The runtime's kubelet part, pure pieces: kwok stages, Pod status patches, probe state.

The same behaviour end to end, against kwok and the API server, is in
tests/e2e/test_runtime.py.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from kubernetes import client

from llmservice.sandbox import stages
from llmservice.sandbox.runtime import podstatus
from llmservice.sandbox.runtime.probes import HttpProbe, Prober

KWOK_POD_READY = """\
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-ready
spec:
  resourceRef: {apiGroup: v1, kind: Pod}
  selector:
    matchExpressions:
    - {key: .metadata.deletionTimestamp, operator: DoesNotExist}
    - {key: .status.podIP, operator: DoesNotExist}
  next:
    statusTemplate: "phase: Running"
"""
KWOK_POD_DELETE = """\
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-delete
spec:
  resourceRef: {apiGroup: v1, kind: Pod}
  selector:
    matchExpressions:
    - {key: .metadata.deletionTimestamp, operator: Exists}
  next:
    delete: true
"""


def by_name(config: str) -> dict[str, Any]:
    return {d["metadata"]["name"]: d for d in yaml.safe_load_all(config)}


def test_pod_ready_and_local_start_never_match_the_same_pod() -> None:
    config = by_name(stages.kwok_config([KWOK_POD_READY, KWOK_POD_DELETE]))
    assert set(config) == {"pod-ready", "pod-delete", stages.LOCAL_STAGE}
    ready = config["pod-ready"]["spec"]["selector"]["matchExpressions"]
    local = config[stages.LOCAL_STAGE]["spec"]["selector"]["matchExpressions"]
    query = stages.runs_locally_query()
    assert {"key": query, "operator": "In", "values": ["false"]} in ready
    assert {"key": query, "operator": "In", "values": ["true"]} in local
    # kwok's own conditions stay, so a Pod still gets its IP only once.
    assert ready[:2] == local[:2]
    assert config["pod-delete"] == yaml.safe_load(KWOK_POD_DELETE)


def test_local_start_leaves_the_pod_pending_and_unready() -> None:
    template = stages.local_start_stage()["spec"]["next"]["statusTemplate"]
    assert "phase: Pending" in template
    assert "reason: ContainerCreating" in template
    assert 'status: "True"\n  type: Ready' not in template


def test_query_names_every_label_the_runtime_selects_on() -> None:
    query = stages.runs_locally_query()
    for needle in (
        '$l["app.kubernetes.io/component"] == "engine"',
        '$l["app.kubernetes.io/managed-by"] == "llmservice-operator"',
        '$l["app.kubernetes.io/name"] == "llmservice-operator"',
        '$l["app.kubernetes.io/component"] == "operator"',
    ):
        assert needle in query


def test_kwok_config_refuses_stage_files_without_pod_ready() -> None:
    with pytest.raises(ValueError, match="pod-ready"):
        stages.kwok_config([KWOK_POD_DELETE])


POD = {
    "spec": {"containers": [{"name": "engine", "image": "vllm/vllm-openai:v1"}]},
    "status": {
        "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": "t0"},
            {"type": "Ready", "status": "False", "lastTransitionTime": "t1"},
        ]
    },
}


def conditions(patch: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in patch["status"]["conditions"]}


def test_config_error_is_pending_with_the_kubelet_reason() -> None:
    view = podstatus.config_error('secret "hf-token" not found')
    patch = podstatus.status_patch(POD, view, "t2")
    status = patch["status"]
    assert status["phase"] == "Pending"
    (container,) = status["containerStatuses"]
    assert container["name"] == "engine"
    assert container["state"] == {
        "waiting": {
            "reason": "CreateContainerConfigError",
            "message": 'secret "hf-token" not found',
        }
    }
    assert container["ready"] is False
    # The Ready condition did not change, so its transition time stays; PodScheduled is
    # not in the patch at all (strategic merge keeps it).
    assert conditions(patch)["Ready"]["lastTransitionTime"] == "t1"
    assert "PodScheduled" not in conditions(patch)


def test_ready_container_moves_the_transition_time() -> None:
    patch = podstatus.status_patch(POD, podstatus.running("t2", ready=True, restarts=1), "t3")
    (container,) = patch["status"]["containerStatuses"]
    assert container["state"] == {"running": {"startedAt": "t2"}}
    assert (container["ready"], container["started"], container["restartCount"]) == (True, True, 1)
    ready = conditions(patch)["Ready"]
    assert (ready["status"], ready["lastTransitionTime"], ready["reason"]) == ("True", "t3", None)


def test_crash_loop_keeps_the_pod_running_but_unready() -> None:
    patch = podstatus.status_patch(POD, podstatus.crash_loop("exited", restarts=3), "t2")
    (container,) = patch["status"]["containerStatuses"]
    assert patch["status"]["phase"] == "Running"
    assert container["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert conditions(patch)["ContainersReady"]["status"] == "False"


def container(probe: client.V1Probe | None) -> client.V1Container:
    return client.V1Container(
        name="router",
        ports=[client.V1ContainerPort(container_port=8080, name="http")],
        readiness_probe=probe,
    )


def test_probe_resolves_a_named_port_and_caps_the_timeout() -> None:
    probe = client.V1Probe(
        http_get=client.V1HTTPGetAction(path="/readyz", port="http"),
        period_seconds=2,
        timeout_seconds=5,
        failure_threshold=1,
    )
    resolved = HttpProbe.readiness(container(probe), serving_port=9999)
    assert resolved == HttpProbe("/readyz", 8080, 2.0, 1.0, 1, 1)


def test_no_http_probe_means_ready_when_running() -> None:
    exec_probe = client.V1Probe(_exec=client.V1ExecAction(command=["true"]))
    assert HttpProbe.readiness(container(None), 8080) is None
    assert HttpProbe.readiness(container(exec_probe), 8080) is None
    prober = Prober(clock=lambda: 0.0, check=lambda url, timeout: False)
    assert prober.ready("uid", None, "127.0.0.1") is True


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_thresholds_and_periods() -> None:
    clock, answers, asked = FakeClock(), [True], []

    def check(url: str, timeout: float) -> bool:
        asked.append(url)
        return answers[-1]

    probe = HttpProbe("/health", 8000, period=5.0, timeout=1.0, success_threshold=1,
                      failure_threshold=2)  # fmt: skip
    prober = Prober(clock=clock, check=check)
    answers[-1] = False
    assert prober.ready("a", probe, "127.1.0.9") is False
    clock.now = 0.5
    prober.ready("a", probe, "127.1.0.9")
    assert len(asked) == 1  # not due: an unready container is probed every second
    clock.now, answers[-1] = 1.0, True
    assert prober.ready("a", probe, "127.1.0.9") is True
    assert asked[-1] == "http://127.1.0.9:8000/health"
    # Ready: probed every period, and one failure is below the threshold of two.
    clock.now, answers[-1] = 4.0, False
    assert prober.ready("a", probe, "127.1.0.9") is True
    assert len(asked) == 2
    clock.now = 6.0
    assert prober.ready("a", probe, "127.1.0.9") is True
    clock.now = 11.0
    assert prober.ready("a", probe, "127.1.0.9") is False
    prober.forget("a")
    assert "a" not in prober.states
