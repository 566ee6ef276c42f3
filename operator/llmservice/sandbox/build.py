"""Building the control-plane binaries from source through the Go module proxy, once.

`go install k8s.io/kubernetes/cmd/...@version` cannot work: the kubernetes go.mod points
every staging module (k8s.io/api, k8s.io/client-go, ...) at `./staging/...`. So the build
uses a throwaway module with one `replace` per staging module, derived from the go.mod the
proxy serves for that release (never hard-coded, so a version bump needs no list update).
etcd is built in the same module at the version kubernetes itself requires, so the two
always match. kwok and helm build with a plain `go install`, each in its own module, and so
do prometheus and promtool, only when asked for (see `_build_prometheus`).

Everything lands in `BinaryLayout` (outside the repository, keyed by version); a later
call finds the binaries and does nothing.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from llmservice.sandbox.errors import SandboxError
from llmservice.sandbox.gotool import find_go, go_environment, run_go
from llmservice.sandbox.progress import Progress
from llmservice.sandbox.versions import (
    ETCD_MODULE,
    HELM_MODULE,
    HELM_PACKAGE,
    KUBERNETES_COMMANDS,
    KUBERNETES_MODULE,
    KWOK_PACKAGE,
    KWOK_STAGES,
    PROMETHEUS_COMMANDS,
    PROMETHEUS_MODULE,
    BinaryLayout,
    prometheus_module_version,
)

# Two parallel compiles fit a 2-core machine; -v names each package, which is the progress.
_BUILD = ("build", "-v", "-p", "2", "-trimpath")
_STAGING = re.compile(r"^\s*(k8s\.io/\S+)\s+=>\s+\./staging/", re.MULTILINE)


def staging_version(kubernetes_version: str) -> str:
    """k8s.io/kubernetes v1.X.Y publishes its staging modules as v0.X.Y."""
    match = re.fullmatch(r"v1\.(\d+)\.(\d+)", kubernetes_version)
    if match is None:
        raise SandboxError(f"unexpected Kubernetes version {kubernetes_version!r}", "use v1.X.Y")
    return f"v0.{match[1]}.{match[2]}"


def staging_modules(gomod_text: str) -> list[str]:
    """Every module the kubernetes go.mod replaces with a `./staging/` directory."""
    return sorted(set(_STAGING.findall(gomod_text)))


def required_version(gomod_text: str, module: str, by: str = KUBERNETES_MODULE) -> str:
    """The version of `module` that a go.mod (of the module `by`) requires."""
    match = re.search(rf"^\s*{re.escape(module)}\s+(v\S+)", gomod_text, re.MULTILINE)
    if match is None:
        raise SandboxError(f"{module} is not required by {by}", "pin another version")
    return match[1]


def build_gomod(kubernetes_version: str, gomod_text: str) -> str:
    """The go.mod of the throwaway build module."""
    staging = staging_version(kubernetes_version)
    replaces = "".join(f"\t{m} => {m} {staging}\n" for m in staging_modules(gomod_text))
    return (
        "module llmservice.dev/sandbox/build\n\n"
        "go 1.26\n\n"
        f"require {KUBERNETES_MODULE} {kubernetes_version}\n\n"
        f"replace (\n{replaces})\n"
    )


def version_ldflags(kubernetes_version: str) -> str:
    """Stamp the release into the binaries, so /version reports it as upstream's do."""
    minor = kubernetes_version.split(".")[1]
    flags = ["-s", "-w"]
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {package}.gitVersion={kubernetes_version}",
            f"-X {package}.gitMajor=1",
            f"-X {package}.gitMinor={minor}",
            f"-X {package}.gitTreeState=clean",
        ]
    return " ".join(flags)


def helm_ldflags(helm_version: str, gomod_text: str) -> str:
    """Stamp helm's release, and the Kubernetes version `helm template` assumes offline.

    Upstream's Makefile takes the latter from the client-go that helm builds with (v0.X.Y
    means v1.X); unstamped, `helm template` would check a chart's `kubeVersion` against v1.20.
    """
    client_go = required_version(gomod_text, "k8s.io/client-go", by=HELM_MODULE)
    minor = client_go.split(".")[1]
    flags = ["-s", "-w", f"-X {HELM_MODULE}/internal/version.version={helm_version}"]
    for package in (f"{HELM_MODULE}/pkg/chartutil", f"{HELM_MODULE}/pkg/lint/rules"):
        flags += [f"-X {package}.k8sVersionMajor=1", f"-X {package}.k8sVersionMinor={minor}"]
    return " ".join(flags)


class Builder:
    """Builds whatever `layout` is missing, printing progress on the way."""

    def __init__(self, layout: BinaryLayout, progress: Progress) -> None:
        self.layout = layout
        self.progress = progress
        self.log = layout.root / "build.log"

    def ensure(self, prometheus: bool = False) -> None:
        """Build missing binaries (Prometheus's too when asked); nothing when all are cached."""
        if not self.layout.missing(prometheus):
            self.progress.say(f"binaries cached in {self.layout.root}")
            return
        go = find_go()
        self.progress.say(f"building the sandbox binaries once; full log in {self.log}")
        if not self.layout.binary("kwok").is_file() or self._stages_missing():
            self._build_kwok(go)
        kube = [*KUBERNETES_COMMANDS, "etcd"]
        if any(not self.layout.binary(name).is_file() for name in kube):
            self._build_kubernetes(go)
        if not self.layout.binary("helm").is_file():
            self._build_helm(go)
        if prometheus and any(not self.layout.binary(n).is_file() for n in PROMETHEUS_COMMANDS):
            self._build_prometheus(go)
        still = self.layout.missing(prometheus)
        if still:
            raise SandboxError(f"the build did not produce {still[0]}", f"see {self.log}")

    def _stages_missing(self) -> bool:
        return any(not self.layout.stage(s).is_file() for s in KWOK_STAGES)

    def _download(self, go: str, module_at: str, cwd: Path) -> dict[str, str]:
        output = run_go(
            go,
            ["mod", "download", "-json", module_at],
            cwd=cwd,
            log=self.log,
            progress=self.progress,
            what=f"downloading {module_at}",
        )
        info: dict[str, str] = json.loads(output[output.index("{") :])
        if info.get("Error"):
            raise SandboxError(
                f"downloading {module_at} failed: {info['Error']}", f"see {self.log}"
            )
        return info

    def _build_kwok(self, go: str) -> None:
        version = self.layout.kwok_version
        bin_dir = self.layout.binary("kwok").parent
        bin_dir.mkdir(parents=True, exist_ok=True)
        with self.progress.step(f"building kwok {version}"):
            module = KWOK_PACKAGE.removesuffix("/cmd/kwok")
            info = self._download(go, f"{module}@{version}", self.layout.root)
            env = go_environment() | {"GOBIN": str(bin_dir)}
            run_go(
                go,
                ["install", "-v", "-trimpath", "-ldflags=-s -w", f"{KWOK_PACKAGE}@{version}"],
                cwd=self.layout.root,
                log=self.log,
                progress=self.progress,
                what="building kwok",
                env=env,
            )
            stages = self.layout.stage(KWOK_STAGES[0]).parent
            stages.mkdir(parents=True, exist_ok=True)
            for relative in KWOK_STAGES:
                shutil.copyfile(Path(info["Dir"]) / relative, self.layout.stage(relative))

    def _build_helm(self, go: str) -> None:
        version = self.layout.helm_version
        bin_dir = self.layout.binary("helm").parent
        bin_dir.mkdir(parents=True, exist_ok=True)
        with self.progress.step(f"building helm {version}"):
            info = self._download(go, f"{HELM_MODULE}@{version}", self.layout.root)
            gomod_text = Path(info["GoMod"]).read_text(encoding="utf-8")
            env = go_environment() | {"GOBIN": str(bin_dir)}
            ldflags = helm_ldflags(version, gomod_text)
            run_go(
                go,
                ["install", "-v", "-trimpath", f"-ldflags={ldflags}", f"{HELM_PACKAGE}@{version}"],
                cwd=self.layout.root,
                log=self.log,
                progress=self.progress,
                what="building helm",
                env=env,
            )

    def _build_prometheus(self, go: str) -> None:
        """prometheus and promtool, with Kubernetes service discovery only, no web UI assets.

        The module has no replace directives, so `go install` works. Two build tags keep the
        build within Go: upstream's `remove_all_sd` with `enable_kubernetes_sd` (plugins/)
        compiles in only the discovery the sandbox uses, about half the code; and leaving out
        `builtinassets` means the React UI, which needs npm to build, is not embedded. The
        HTTP API (queries, targets, rules) that the tests and `promtool` use is all there;
        the web pages answer 404 instead.
        """
        release = self.layout.prometheus_version
        module_version = prometheus_module_version(release)
        bin_dir = self.layout.binary("prometheus").parent
        bin_dir.mkdir(parents=True, exist_ok=True)
        with self.progress.step(f"building prometheus and promtool {release}"):
            env = go_environment() | {"GOBIN": str(bin_dir)}
            stamp = f"-X github.com/prometheus/common/version.Version={release.lstrip('v')}"
            packages = [
                f"{PROMETHEUS_MODULE}/cmd/{c}@{module_version}" for c in PROMETHEUS_COMMANDS
            ]
            tags = "remove_all_sd,enable_kubernetes_sd"
            args = ["install", "-v", "-p", "2", "-trimpath", "-tags", tags]
            run_go(
                go,
                [*args, f"-ldflags=-s -w {stamp}", *packages],
                cwd=self.layout.root,
                log=self.log,
                progress=self.progress,
                what="building prometheus",
                env=env,
            )

    def _build_kubernetes(self, go: str) -> None:
        version = self.layout.kubernetes_version
        module_dir = self.layout.build_module
        module_dir.mkdir(parents=True, exist_ok=True)
        with self.progress.step(f"resolving Kubernetes {version} modules"):
            info = self._download(go, f"{KUBERNETES_MODULE}@{version}", module_dir.parent)
            gomod_text = Path(info["GoMod"]).read_text(encoding="utf-8")
            etcd_version = required_version(gomod_text, ETCD_MODULE)
            (module_dir / "go.mod").write_text(build_gomod(version, gomod_text), encoding="utf-8")
            tools = [f"{KUBERNETES_MODULE}/cmd/{c}@{version}" for c in KUBERNETES_COMMANDS]
            run_go(
                go,
                ["get", "-tool", *tools, f"{ETCD_MODULE}@{etcd_version}"],
                cwd=module_dir,
                log=self.log,
                progress=self.progress,
                what="resolving Kubernetes dependencies",
            )
        bin_dir = self.layout.kubernetes_bin
        bin_dir.mkdir(parents=True, exist_ok=True)
        packages = [f"{KUBERNETES_MODULE}/cmd/{c}" for c in KUBERNETES_COMMANDS]
        with self.progress.step(f"compiling {', '.join(KUBERNETES_COMMANDS)} {version}"):
            run_go(
                go,
                [*_BUILD, f"-ldflags={version_ldflags(version)}", "-o", f"{bin_dir}/", *packages],
                cwd=module_dir,
                log=self.log,
                progress=self.progress,
                what="compiling Kubernetes",
            )
        with self.progress.step(f"compiling etcd {etcd_version}"):
            run_go(
                go,
                [*_BUILD, "-ldflags=-s -w", "-o", str(bin_dir / "etcd"), ETCD_MODULE],
                cwd=module_dir,
                log=self.log,
                progress=self.progress,
                what="compiling etcd",
            )
