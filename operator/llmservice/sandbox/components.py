"""The command line and config files of each control-plane component.

Pure functions from paths and ports to argv lists, so the flags that matter (see the
module's tests) are readable in one place. Everything binds to 127.0.0.1 only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from llmservice.sandbox import stages
from llmservice.sandbox.layout import SandboxDir, Settings
from llmservice.sandbox.pki import Pki
from llmservice.sandbox.versions import KWOK_STAGES, BinaryLayout

HOST = "127.0.0.1"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
NODE_LEASE_SECONDS = 40


@dataclass(frozen=True)
class Ports:
    """The loopback ports of one sandbox, chosen at `up` and kept in its state file."""

    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int

    @property
    def apiserver_url(self) -> str:
        return f"https://{HOST}:{self.apiserver}"

    @property
    def etcd_url(self) -> str:
        return f"http://{HOST}:{self.etcd_client}"


def etcd(binaries: BinaryLayout, where: SandboxDir, ports: Ports) -> list[str]:
    peer = f"http://{HOST}:{ports.etcd_peer}"
    return [
        str(binaries.binary("etcd")),
        "--name=sandbox",
        f"--data-dir={where.etcd_data}",
        f"--listen-client-urls={ports.etcd_url}",
        f"--advertise-client-urls={ports.etcd_url}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=sandbox={peer}",
        "--unsafe-no-fsync",
        "--log-level=warn",
    ]


def apiserver(
    binaries: BinaryLayout, where: SandboxDir, pki: Pki, ports: Ports, settings: Settings
) -> list[str]:
    return [
        str(binaries.binary("kube-apiserver")),
        f"--etcd-servers={ports.etcd_url}",
        f"--bind-address={HOST}",
        f"--advertise-address={HOST}",
        f"--secure-port={ports.apiserver}",
        "--endpoint-reconciler-type=none",
        f"--tls-cert-file={pki.admin_cert}",
        f"--tls-private-key-file={pki.admin_key}",
        f"--client-ca-file={pki.ca_cert}",
        f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
        f"--service-account-key-file={pki.service_account_pub}",
        f"--service-account-signing-key-file={pki.service_account_key}",
        f"--service-cluster-ip-range={settings.service_cidr}",
        "--authorization-mode=Node,RBAC",
        f"--cert-dir={where.root / 'apiserver-certs'}",
        f"--audit-policy-file={audit_policy(where)}",
        f"--audit-log-path={where.audit_log}",
        # Batched, so auditing adds no latency to requests, and flushed within a second, so
        # a reader sees a request soon after it was served; bounded on disk.
        "--audit-log-mode=batch",
        "--audit-log-batch-max-wait=1s",
        "--audit-log-format=json",
        "--audit-log-maxsize=200",
        "--audit-log-maxbackup=1",
    ]


def audit_policy(where: SandboxDir) -> Path:
    """Every request at Metadata level (user, verb, resource, code; never a body).

    So the API load of one component is counted exactly, by its user, rather than guessed
    from the API server's totals. Only the response stage is kept: one line per request.
    """
    policy = {
        "apiVersion": "audit.k8s.io/v1",
        "kind": "Policy",
        "omitStages": ["RequestReceived"],
        "rules": [{"level": "Metadata"}],
    }
    path = where.config / "audit-policy.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(policy), encoding="utf-8")
    return path


def controller_manager(
    binaries: BinaryLayout, where: SandboxDir, pki: Pki, ports: Ports, settings: Settings
) -> list[str]:
    kubeconfig = str(where.kubeconfig)
    return [
        str(binaries.binary("kube-controller-manager")),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--leader-elect=false",
        f"--bind-address={HOST}",
        f"--secure-port={ports.controller_manager}",
        f"--cert-dir={where.root / 'controller-manager-certs'}",
        f"--root-ca-file={pki.ca_cert}",
        f"--service-account-private-key-file={pki.service_account_key}",
        f"--service-cluster-ip-range={settings.service_cidr}",
        "--node-monitor-period=5s",
    ]


def scheduler_config(where: SandboxDir) -> Path:
    """A KubeSchedulerConfiguration: the admin kubeconfig, no leader election."""
    config = {
        "apiVersion": "kubescheduler.config.k8s.io/v1",
        "kind": "KubeSchedulerConfiguration",
        "clientConnection": {"kubeconfig": str(where.kubeconfig)},
        "leaderElection": {"leaderElect": False},
    }
    path = where.config / "scheduler.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def scheduler(binaries: BinaryLayout, where: SandboxDir, ports: Ports) -> list[str]:
    kubeconfig = str(where.kubeconfig)
    return [
        str(binaries.binary("kube-scheduler")),
        f"--config={scheduler_config(where)}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        f"--bind-address={HOST}",
        f"--secure-port={ports.scheduler}",
        f"--cert-dir={where.root / 'scheduler-certs'}",
    ]


def kwok_config(binaries: BinaryLayout, where: SandboxDir) -> Path:
    """kwok v0.8.0 has no built-in stages: pass node and pod lifecycles explicitly.

    Without pod-delete, deleted Pods hang in Terminating; without the lease heartbeat,
    nodes go NotReady and their Pods are evicted after five minutes. The Pods the local
    runtime runs get their own start stage (see `stages`). The options stay on the command
    line, where `ps` shows them.
    """
    texts = [binaries.stage(s).read_text(encoding="utf-8") for s in KWOK_STAGES]
    path = where.config / "kwok.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(stages.kwok_config(texts), encoding="utf-8")
    return path


def kwok(binaries: BinaryLayout, where: SandboxDir, settings: Settings) -> list[str]:
    return [
        str(binaries.binary("kwok")),
        f"--kubeconfig={where.kubeconfig}",
        f"--config={kwok_config(binaries, where)}",
        "--manage-all-nodes=true",
        f"--node-lease-duration-seconds={NODE_LEASE_SECONDS}",
        f"--cidr={settings.pod_cidr}",
        f"--node-ip={HOST}",
    ]
