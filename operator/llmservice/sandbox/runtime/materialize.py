"""Doing a kubelet's small jobs for one Pod: credentials, volumes, env and args.

- Credentials: a TokenRequest for the Pod's ServiceAccount, bound to the Pod, written into
  a kubeconfig the process reads through `KUBECONFIG`. The process never sees admin
  credentials, so the RBAC that the operator renders is what it gets.
- Secret and ConfigMap volumes are read from the API and written under the Pod's directory
  (emptyDirs become empty directories there); every container arg or env value that starts
  with a mount path is rewritten to the local copy, since the process runs on this
  machine's file system.
- Env: plain values, `fieldRef` (name, namespace, IPs, node, ServiceAccount),
  `secretKeyRef` / `configMapKeyRef`, and `envFrom`.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client

from llmservice.sandbox.kubeconfig import write_token

TOKEN_SECONDS = 24 * 3600
_UNSAFE_ENV = ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT")


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

    def _secret(self, namespace: str, name: str) -> dict[str, bytes]:
        return _decode(self.core.read_namespaced_secret(name, namespace).data, binary=True)

    def _config_map(self, namespace: str, name: str) -> dict[str, bytes]:
        return _decode(self.core.read_namespaced_config_map(name, namespace).data, binary=False)

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

    def volumes(self, pod: Any, directory: Path) -> dict[str, Path]:
        """Write Secret and ConfigMap volumes; return mount path -> local directory."""
        namespace = pod.metadata.namespace
        local: dict[str, Path] = {}
        for volume in pod.spec.volumes or []:
            if volume.secret is not None:
                files = self._secret(namespace, volume.secret.secret_name)
            elif volume.config_map is not None:
                files = self._config_map(namespace, volume.config_map.name)
            elif volume.empty_dir is not None:
                files = {}
            else:
                continue
            target = directory / "volumes" / volume.name
            target.mkdir(parents=True, exist_ok=True)
            for key, value in files.items():
                (target / key).write_bytes(value)
            local[volume.name] = target
        container = pod.spec.containers[0]
        mounts: dict[str, Path] = {}
        for mount in container.volume_mounts or []:
            if mount.name in local:
                mounts[mount.mount_path.rstrip("/")] = local[mount.name]
        return mounts

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
                data = self._secret(namespace, source.secret_ref.name)
            elif source.config_map_ref is not None:
                data = self._config_map(namespace, source.config_map_ref.name)
            else:
                continue
            env |= {prefix + k: v.decode() for k, v in data.items()}
        for var in container.env or []:
            ref = var.value_from
            if ref is None:
                env[var.name] = var.value or ""
            elif ref.field_ref is not None:
                env[var.name] = self._field(pod, ref.field_ref.field_path)
            elif ref.secret_key_ref is not None:
                data = self._secret(namespace, ref.secret_key_ref.name)
                env[var.name] = data.get(ref.secret_key_ref.key, b"").decode()
            elif ref.config_map_key_ref is not None:
                data = self._config_map(namespace, ref.config_map_key_ref.name)
                env[var.name] = data.get(ref.config_map_key_ref.key, b"").decode()
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
