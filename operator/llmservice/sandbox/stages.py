"""kwok's Pod lifecycle, split between kwok and the local runtime.

kwok's own `pod-ready` stage marks a Pod Running and Ready the moment it has a node. For the
Pods the local runtime runs a process for, that is a lie: a real kubelet first mounts the
volumes and resolves the env (which fails on a missing Secret), then starts the container,
then reports Ready only once the readiness probe passes. So those Pods get a different
stage here, `pod-start-local`, which does only what the network plugin would: give the Pod
its IP and leave it Pending with its containers `ContainerCreating`. From there the runtime
writes the status as a kubelet does (see `runtime.podstatus`).

kwok picks among the stages whose selectors match, so the two must never both match: each
carries the same jq predicate over the Pod's labels, one wanting `true`, the other `false`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from llmservice.sandbox.runtime.workloads import COMPONENT_LABEL, WORKLOADS

POD_READY_STAGE = "pod-ready"
LOCAL_STAGE = "pod-start-local"


def _jq_string(value: str) -> str:
    # jq string literals are JSON string literals.
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def runs_locally_query() -> str:
    """A jq expression that is `true` exactly for the Pods `workloads.component_of` accepts."""
    alternatives = []
    for component, workload in sorted(WORKLOADS.items()):
        wanted = {COMPONENT_LABEL: component, **workload.labels}
        terms = [f"$l[{_jq_string(k)}] == {_jq_string(v)}" for k, v in sorted(wanted.items())]
        alternatives.append("(" + " and ".join(terms) + ")")
    return "(.metadata.labels // {}) as $l | " + " or ".join(alternatives)


def _runs_locally(value: bool) -> dict[str, Any]:
    return {"key": runs_locally_query(), "operator": "In", "values": [str(value).lower()]}


# What the network plugin and the kubelet's first sync would write before any container
# starts. The template language is kwok's (Go templates with its functions).
_LOCAL_STATUS_TEMPLATE = """\
{{ $now := Now }}
conditions:
- lastTransitionTime: {{ $now | Quote }}
  status: "True"
  type: Initialized
- lastTransitionTime: {{ $now | Quote }}
  status: "False"
  reason: ContainersNotReady
  type: Ready
- lastTransitionTime: {{ $now | Quote }}
  status: "False"
  reason: ContainersNotReady
  type: ContainersReady
containerStatuses:
{{ range .spec.containers }}
- image: {{ .image | Quote }}
  name: {{ .name | Quote }}
  ready: false
  started: false
  restartCount: 0
  state:
    waiting:
      reason: ContainerCreating
{{ end }}
hostIP: {{ NodeIPWith .spec.nodeName | Quote }}
podIP: {{ PodIPWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) \
( or .metadata.name "" ) ( or .metadata.namespace "" ) | Quote }}
phase: Pending
startTime: {{ $now | Quote }}
"""


def local_start_stage() -> dict[str, Any]:
    return {
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "Stage",
        "metadata": {"name": LOCAL_STAGE},
        "spec": {
            "resourceRef": {"apiGroup": "v1", "kind": "Pod"},
            "selector": {
                "matchExpressions": [
                    {"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"},
                    {"key": ".status.podIP", "operator": "DoesNotExist"},
                    _runs_locally(True),
                ]
            },
            "next": {"statusTemplate": _LOCAL_STATUS_TEMPLATE},
        },
    }


def _without_local_pods(stage: Mapping[str, Any]) -> dict[str, Any]:
    """kwok's stage, restricted to the Pods the runtime does not run."""
    changed = copy.deepcopy(dict(stage))
    selector = changed["spec"].setdefault("selector", {})
    selector.setdefault("matchExpressions", []).append(_runs_locally(False))
    return changed


def kwok_config(stage_texts: Sequence[str]) -> str:
    """kwok's stage files, with `pod-ready` split as the module docstring explains."""
    documents: list[dict[str, Any]] = []
    for text in stage_texts:
        for stage in yaml.safe_load_all(text):
            if not stage:
                continue
            if stage["metadata"]["name"] == POD_READY_STAGE:
                stage = _without_local_pods(stage)
            documents.append(stage)
    if not any(d["metadata"]["name"] == POD_READY_STAGE for d in documents):
        raise ValueError(f"kwok's stage files have no {POD_READY_STAGE!r} stage")
    documents.append(local_start_stage())
    return yaml.safe_dump_all(documents, sort_keys=False)
