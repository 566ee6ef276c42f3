"""Doing a kubelet's small jobs for one Pod: credentials, volumes, env and args.

- Credentials: a TokenRequest for the Pod's ServiceAccount, bound to the Pod, written into
  a kubeconfig the process reads through `KUBECONFIG`. The process never sees admin
  credentials, so the RBAC that the operator renders is what it gets.
- Secret and ConfigMap volumes are read from the API and written under the Pod's directory
  in the kubelet's layout (`atomic_volume`), and `refresh_volumes` updates them atomically
  when their source changes, as a kubelet does; emptyDirs become empty directories there.
  Every container arg or env value that starts with a mount path is rewritten to the local
  copy, since the process runs on this machine's file system.
- Env: plain values, `fieldRef` (name, namespace, IPs, node, ServiceAccount),
  `secretKeyRef` / `configMapKeyRef`, and `envFrom`.

A reference to a Secret or ConfigMap that does not exist (or lacks the key) raises
`MissingReference` with the kubelet's own wording, unless the reference is optional:
volumes fail as `FailedMount`, env as `CreateContainerConfigError`.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client

from llmservice.sandbox.kubeconfig import write_token
from llmservice.sandbox.runtime.atomic_volume import write_volume

# A kubelet rotates a Pod's token before it expires and clients re-read it; these processes
# read their kubeconfig once. So the token lasts longer than any sandbox is left running.
# It is bound to the Pod all the same: deleting the Pod revokes it.
TOKEN_SECONDS = 30 * 24 * 3600
SECRET = "Secret"  # noqa: S105 - a kind, not a secret
CONFIG_MAP = "ConfigMap"
# The host's cluster credentials and Python paths: a Pod has its own, and the host's
# PYTHONPATH could make the product import something other than what it installed.
_UNSAFE_ENV = (
    "KUBECONFIG",
    "KUBERNETES_SERVICE_HOST",
    "KUBERNETES_SERVICE_PORT",
    "PYTHONPATH",
    "PYTHONHOME",
)


class MissingReference(Exception):
    """A Secret or ConfigMap the Pod needs is missing; `mounting` tells volume from env."""

    def __init__(self, message: str, mounting: bool) -> None:
        super().__init__(message)
        self.message = message
        self.mounting = mounting


@dataclass(frozen=True)
class Materialized:
    """Everything needed to start the Pod's process, besides the command itself."""

    args: list[str]
    env: dict[str, str]
    port: int


def _decode(data: Any, binary: bool) -> dict[str, bytes]:
    if not data:
        return {}
    if binary:
        return {k: base64.b64decode(v) for k, v in data.items()}
    return {k: v.encode() for k, v in data.items()}


class PodMaterializer:
    """Turns a Pod object into local files, env and args, using the admin API."""

    def __init__(self, core: client.CoreV1Api, server: str, ca: Path, root: Path) -> None:
        self.core = core
        self.server = server
        self.ca = ca
        self.root = root

    def _read(self, kind: str, namespace: str, name: str) -> dict[str, bytes] | None:
        """The data of a Secret or ConfigMap, or None when it does not exist."""
        try:
            if kind == SECRET:
                return _decode(self.core.read_namespaced_secret(name, namespace).data, True)
            return _decode(self.core.read_namespaced_config_map(name, namespace).data, False)
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def _source(
        self, kind: str, namespace: str, name: str, optional: bool | None
    ) -> dict[str, bytes] | None:
        """For env: the data, None for a missing optional source, or the kubelet's error."""
        data = self._read(kind, namespace, name)
        if data is None and not optional:
            raise MissingReference(f'{kind.lower()} "{name}" not found', mounting=False)
        return data

    def _key(self, kind: str, namespace: str, ref: Any) -> str | None:
        """One key of a Secret or ConfigMap for an env var (None: optional and missing)."""
        data = self._source(kind, namespace, ref.name, ref.optional)
        if data is None:
            return None
        if ref.key not in data:
            if ref.optional:
                return None
            raise MissingReference(
                f"couldn't find key {ref.key} in {kind} {namespace}/{ref.name}", mounting=False
            )
        return data[ref.key].decode()

    def kubeconfig(self, pod: Any, directory: Path) -> Path:
        """A kubeconfig with a bound token of the Pod's ServiceAccount."""
        account = pod.spec.service_account_name or "default"
        request = client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(
                audiences=[],
                expiration_seconds=TOKEN_SECONDS,
                bound_object_ref=client.V1BoundObjectReference(
                    api_version="v1", kind="Pod", name=pod.metadata.name, uid=pod.metadata.uid
                ),
            )
        )
        namespace = pod.metadata.namespace
        token: Any = self.core.create_namespaced_service_account_token(account, namespace, request)
        return write_token(
            directory / "kubeconfig", self.server, self.ca, str(token.status.token), namespace
        )

    def _projection(self, namespace: str, volume: Any) -> dict[str, bytes] | None:
        """The files of a Secret or ConfigMap volume (honouring `items`); None for others.

        Raises `MissingReference` for a source or key that is missing and not optional.
        """
        if volume.secret is not None:
            source = volume.secret
            kind, name = SECRET, source.secret_name
        elif volume.config_map is not None:
            source = volume.config_map
            kind, name = CONFIG_MAP, source.name
        else:
            return None
        found = self._read(kind, namespace, name)
        if found is None:
            if source.optional:
                return {}
            raise MissingReference(
                f'MountVolume.SetUp failed for volume "{volume.name}" : '
                f'{kind.lower()} "{name}" not found',
                mounting=True,
            )
        if not source.items:
            return found
        files: dict[str, bytes] = {}
        for item in source.items:
            if item.key in found:
                files[item.path] = found[item.key]
            elif not source.optional:
                what = "configmap references non-existent config key"
                if kind == SECRET:
                    what = "references non-existent secret key"
                raise MissingReference(
                    f'MountVolume.SetUp failed for volume "{volume.name}" : {what}: {item.key}',
                    mounting=True,
                )
        return files

    def volumes(self, pod: Any, directory: Path) -> dict[str, Path]:
        """Write Secret and ConfigMap volumes; return mount path -> local directory."""
        namespace = pod.metadata.namespace
        local: dict[str, Path] = {}
        for volume in pod.spec.volumes or []:
            target = directory / "volumes" / volume.name
            files = self._projection(namespace, volume)
            if files is not None:
                write_volume(target, files)
            elif volume.empty_dir is not None:
                target.mkdir(parents=True, exist_ok=True)
            else:
                continue
            local[volume.name] = target
        container = pod.spec.containers[0]
        mounts: dict[str, Path] = {}
        for mount in container.volume_mounts or []:
            if mount.name in local:
                mounts[mount.mount_path.rstrip("/")] = local[mount.name]
        return mounts

    def refresh_volumes(self, pod: Any) -> list[str]:
        """Bring the running Pod's Secret and ConfigMap volumes up to date, atomically.

        Returns the names of the volumes that changed. As a kubelet does, a source that is
        gone (or lost a key) leaves the files as they were; its error is raised after the
        other volumes are refreshed.
        """
        directory = self.root / pod.metadata.uid
        changed: list[str] = []
        missing: MissingReference | None = None
        for volume in pod.spec.volumes or []:
            try:
                files = self._projection(pod.metadata.namespace, volume)
            except MissingReference as error:
                missing = error
                continue
            if files is not None and write_volume(directory / "volumes" / volume.name, files):
                changed.append(volume.name)
        if missing is not None:
            raise missing
        return changed

    def _field(self, pod: Any, path: str) -> str:
        values = {
            "metadata.name": pod.metadata.name,
            "metadata.namespace": pod.metadata.namespace,
            "metadata.uid": pod.metadata.uid,
            "spec.nodeName": pod.spec.node_name,
            "spec.serviceAccountName": pod.spec.service_account_name or "default",
            "status.podIP": pod.status.pod_ip,
            "status.hostIP": pod.status.host_ip,
        }
        return str(values.get(path) or "")

    def env(self, pod: Any) -> dict[str, str]:
        """The container's environment as the kubelet would compute it."""
        namespace = pod.metadata.namespace
        container = pod.spec.containers[0]
        env: dict[str, str] = {}
        for source in container.env_from or []:
            prefix = source.prefix or ""
            if source.secret_ref is not None:
                ref, kind = source.secret_ref, SECRET
            elif source.config_map_ref is not None:
                ref, kind = source.config_map_ref, CONFIG_MAP
            else:
                continue
            data = self._source(kind, namespace, ref.name, ref.optional) or {}
            env |= {prefix + k: v.decode() for k, v in data.items()}
        for var in container.env or []:
            ref = var.value_from
            value: str | None
            if ref is None:
                value = var.value or ""
            elif ref.field_ref is not None:
                value = self._field(pod, ref.field_ref.field_path)
            elif ref.secret_key_ref is not None:
                value = self._key(SECRET, namespace, ref.secret_key_ref)
            elif ref.config_map_key_ref is not None:
                value = self._key(CONFIG_MAP, namespace, ref.config_map_key_ref)
            else:
                continue
            if value is not None:
                env[var.name] = value
        return env

    def materialize(self, pod: Any, default_port: int) -> Materialized:
        directory = self.root / pod.metadata.uid
        directory.mkdir(parents=True, exist_ok=True)
        kubeconfig = self.kubeconfig(pod, directory)
        mounts = self.volumes(pod, directory)
        container = pod.spec.containers[0]
        ports = [p.container_port for p in container.ports or [] if p.protocol in (None, "TCP")]
        args = [rewrite(a, mounts) for a in container.args or []]
        pod_env = {k: rewrite(v, mounts) for k, v in self.env(pod).items()}
        env = {k: v for k, v in os.environ.items() if k not in _UNSAFE_ENV}
        env |= pod_env
        env["KUBECONFIG"] = str(kubeconfig)
        return Materialized(args=args, env=env, port=ports[0] if ports else default_port)


def rewrite(value: str, mounts: dict[str, Path]) -> str:
    """Point a container path under a mounted volume at its local copy."""
    for mount_path, local in sorted(mounts.items(), key=lambda m: -len(m[0])):
        if value == mount_path or value.startswith(mount_path + "/"):
            return str(local) + value[len(mount_path) :]
        marker = "=" + mount_path
        if marker in value:  # --flag=/mount/path/file
            head, tail = value.split(marker, 1)
            if tail == "" or tail.startswith("/"):
                return f"{head}={local}{tail}"
    return value
