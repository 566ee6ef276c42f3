"""The sandbox's settings and the files it keeps while it runs.

Everything a running sandbox owns lives in one directory (certificates, etcd data, logs,
kubeconfigs, the state file), so `down` removes exactly that directory and nothing else.
`LLMSERVICE_SANDBOX_DIR` moves it; the e2e fixture uses its own so a developer's sandbox
and a test run never share files.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from llmservice.sandbox.versions import cache_root

# Pod and Service addresses both come from loopback: every address the sandbox hands out
# is on this machine, and Pod IPs are bindable without any network setup (Linux routes all
# of 127.0.0.0/8 to `lo`). The API server accepts loopback Pod IPs and Service ranges; only
# EndpointSlices reject loopback, so Services have no endpoints here.
DEFAULT_POD_CIDR = "127.100.0.0/16"
DEFAULT_SERVICE_CIDR = "127.96.0.0/16"
GPU_RESOURCE = "nvidia.com/gpu"
# What the local runtime runs for engine Pods: the simulator (fast, the default) or the
# real vLLM CPU build serving a tiny model (`sandbox build --engine vllm` installs it).
ENGINES = ("sim", "vllm")


@dataclass(frozen=True)
class Settings:
    """What a sandbox looks like: its nodes and its address ranges."""

    nodes: int = 2
    gpus_per_node: int = 8
    node_cpu: str = "64"
    node_memory: str = "512Gi"
    node_pods: str = "110"
    pod_cidr: str = DEFAULT_POD_CIDR
    service_cidr: str = DEFAULT_SERVICE_CIDR
    apiserver_port: int = 0  # 0: any free port
    runtime: bool = True
    engine: str = "sim"

    @property
    def first_service_ip(self) -> str:
        return str(next(ipaddress.ip_network(self.service_cidr).hosts()))


def default_directory() -> Path:
    override = os.environ.get("LLMSERVICE_SANDBOX_DIR")
    return Path(override) if override else cache_root() / "sandbox"


@dataclass(frozen=True)
class SandboxDir:
    """Paths inside one sandbox's directory."""

    root: Path

    @property
    def marker(self) -> Path:
        """Written first at `up`: only a directory carrying it is ever removed by `down`."""
        return self.root / ".llmservice-sandbox"

    def owned(self) -> bool:
        return self.marker.is_file()

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def audit_log(self) -> Path:
        """One JSON line per API request: who did what (see `sandbox.audit`)."""
        return self.logs / "audit.log"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def config(self) -> Path:
        return self.root / "config"

    @property
    def kwok_workdir(self) -> Path:
        return self.root / "kwok"

    @property
    def runtime(self) -> Path:
        """Per-Pod files of the local runtime: records, kubeconfigs, mounted volumes."""
        return self.root / "pods"

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"
