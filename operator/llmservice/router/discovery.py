"""Which engine replicas the router may send to.

`PodTracker` is a pure state machine over Pod objects (as the API server sends them): a Pod
is *routable* when it is Running, has an IP, its ``Ready`` condition is True and it has no
``deletionTimestamp``; a Pod being deleted is *draining*: it receives no new requests, while
the requests already on it finish (the proxy keeps per-replica counters, keyed by Pod name,
across every change). Replicas are named by Pod name, so a replica keeps its place on the
hash ring for as long as its Pod lives.

`KubernetesDiscovery` feeds the tracker from a list-then-watch of the Pods matching a label
selector in one namespace, talking to the API server with aiohttp, authenticated from the
in-cluster service account or ``KUBECONFIG``. A watch that ends is resumed from the last
resourceVersion; after ``410 Gone`` or an error the Pods are listed again (with backoff),
and the last known state stays in force meanwhile. `StaticDiscovery` serves a fixed list.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

import aiohttp

from llmservice.pods import is_serving

__all__ = [
    "ApiServer",
    "Discovery",
    "KubernetesDiscovery",
    "PodTracker",
    "Replica",
    "StaticDiscovery",
    "load_api_server",
]

log = logging.getLogger("llmservice.router.discovery")

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
WATCH_TIMEOUT_SECONDS = 290
BACKOFF_INITIAL = 0.5
BACKOFF_MAX = 30.0


@dataclass(frozen=True, slots=True)
class Replica:
    """One engine replica: its stable name and base URL (``http://ip:port``)."""

    name: str
    url: str


Listener = Callable[[dict[str, Replica]], None]


class Discovery(Protocol):
    """A source of routable replicas that calls a listener with each new set."""

    @property
    def synced(self) -> bool:
        """True once the first complete view is known."""

    async def start(self, listener: Listener) -> None:
        """Begin; ``listener`` gets the full routable set whenever it changes."""

    async def stop(self) -> None:
        """Stop and release every resource."""


class StaticDiscovery:
    """A fixed list of base URLs, all routable; each replica is named by its URL."""

    def __init__(self, urls: tuple[str, ...]) -> None:
        for url in urls:
            parts = urlsplit(url)
            if parts.scheme != "http" or not parts.hostname:
                raise ValueError(f"static backend {url!r} is not an http://host:port URL")
        self._replicas = {
            url.rstrip("/"): Replica(url.rstrip("/"), url.rstrip("/")) for url in urls
        }

    @property
    def synced(self) -> bool:
        return True

    async def start(self, listener: Listener) -> None:
        listener(dict(self._replicas))

    async def stop(self) -> None:
        return None


class PodTracker:
    """Pure state of the engine Pods: routable, draining, or neither."""

    def __init__(self, engine_port: int) -> None:
        self.engine_port = engine_port
        self._routable: dict[str, Replica] = {}
        self._draining: set[str] = set()

    @property
    def routable(self) -> dict[str, Replica]:
        return dict(self._routable)

    @property
    def draining(self) -> frozenset[str]:
        return frozenset(self._draining)

    def _observe(self, pod: Mapping[str, Any]) -> None:
        name = (pod.get("metadata") or {}).get("name")
        if not isinstance(name, str):
            return
        if (pod.get("metadata") or {}).get("deletionTimestamp"):
            self._routable.pop(name, None)
            self._draining.add(name)
        elif is_serving(pod):
            self._draining.discard(name)
            ip = pod["status"]["podIP"]
            host = f"[{ip}]" if ":" in ip else ip
            self._routable[name] = Replica(name, f"http://{host}:{self.engine_port}")
        else:
            self._draining.discard(name)
            self._routable.pop(name, None)

    def apply(self, event_type: str, pod: Mapping[str, Any]) -> bool:
        """Apply one watch event (ADDED, MODIFIED, DELETED); True if the routable set changed."""
        before = self._routable.copy()
        if event_type == "DELETED":
            name = str((pod.get("metadata") or {}).get("name"))
            self._routable.pop(name, None)
            self._draining.discard(name)
        elif event_type in ("ADDED", "MODIFIED"):
            self._observe(pod)
        return before != self._routable

    def reset(self, pods: Iterable[Mapping[str, Any]]) -> bool:
        """Replace the whole state with a fresh list; True if the routable set changed."""
        before = self._routable.copy()
        self._routable.clear()
        self._draining.clear()
        for pod in pods:
            self._observe(pod)
        return before != self._routable


@dataclass(frozen=True, slots=True)
class ApiServer:
    """How to reach the API server: base URL, TLS context and a bearer-token source."""

    host: str
    ssl_context: ssl.SSLContext | bool
    token: Callable[[], str | None]
    namespace: str


def load_api_server(namespace: str | None) -> ApiServer:
    """In-cluster service account when present, else ``KUBECONFIG`` (or ~/.kube/config)."""
    from kubernetes import config as kube_config  # only on this path: importing it is slow
    from kubernetes.client import Configuration

    configuration = Configuration()
    in_cluster = True
    try:
        kube_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except kube_config.ConfigException:
        in_cluster = False
        kube_config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    if namespace is None:
        namespace = "default"
        if in_cluster and SERVICE_ACCOUNT_NAMESPACE.exists():
            namespace = SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    context: ssl.SSLContext | bool
    if configuration.verify_ssl:
        context = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
        if configuration.cert_file:
            context.load_cert_chain(configuration.cert_file, configuration.key_file)
    else:
        context = False

    def token() -> str | None:
        # kubernetes >= 31 keeps the bearer token under "BearerToken" (alias "authorization").
        value: str | None = configuration.get_api_key_with_prefix(
            "BearerToken", alias="authorization"
        )
        return value

    return ApiServer(configuration.host.rstrip("/"), context, token, namespace)


class KubernetesDiscovery:
    """List-then-watch the engine Pods and keep a `PodTracker` current."""

    def __init__(self, api: ApiServer, selector: str, engine_port: int) -> None:
        self.api = api
        self.selector = selector
        self.tracker = PodTracker(engine_port)
        self._synced = False
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def synced(self) -> bool:
        return self._synced

    def _url(self, **query: str) -> str:
        params = "&".join(f"{k}={quote(v, safe='')}" for k, v in query.items())
        path = f"/api/v1/namespaces/{quote(self.api.namespace, safe='')}/pods"
        return f"{self.api.host}{path}?labelSelector={quote(self.selector, safe='')}&{params}"

    def _headers(self) -> dict[str, str]:
        token = self.api.token()
        return {"Authorization": token} if token else {}

    async def start(self, listener: Listener) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self.api.ssl_context, limit=4)
        )
        self._task = asyncio.create_task(self._run(listener))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._session is not None:
            await self._session.close()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("discovery has not started")
        return self._session

    async def _list(self) -> tuple[list[dict[str, Any]], str]:
        timeout = aiohttp.ClientTimeout(total=60)
        async with self._client().get(
            self._url(limit="500"), headers=self._headers(), timeout=timeout
        ) as response:
            response.raise_for_status()
            body = await response.json()
        return body.get("items") or [], body["metadata"]["resourceVersion"]

    async def _watch(self, version: str, listener: Listener) -> str | None:
        """Follow one watch; the version to resume from, or None to relist."""
        url = self._url(
            watch="1",
            resourceVersion=version,
            allowWatchBookmarks="true",
            timeoutSeconds=str(WATCH_TIMEOUT_SECONDS),
        )
        timeout = aiohttp.ClientTimeout(total=WATCH_TIMEOUT_SECONDS + 30, sock_connect=10)
        async with self._client().get(url, headers=self._headers(), timeout=timeout) as response:
            if response.status == 410:
                return None
            response.raise_for_status()
            async for line in response.content:
                if not line.strip():
                    continue
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    return None if obj.get("code") == 410 else version
                version = (obj.get("metadata") or {}).get("resourceVersion", version)
                if kind != "BOOKMARK" and self.tracker.apply(kind, obj):
                    listener(self.tracker.routable)
        return version

    async def _run(self, listener: Listener) -> None:
        backoff = BACKOFF_INITIAL
        version: str | None = None
        while True:
            try:
                if version is None:
                    pods, version = await self._list()
                    if self.tracker.reset(pods) or not self._synced:
                        listener(self.tracker.routable)
                    self._synced = True
                version = await self._watch(version, listener)
                backoff = BACKOFF_INITIAL
            except asyncio.CancelledError:
                raise
            except (aiohttp.ClientError, TimeoutError, ValueError, KeyError) as error:
                log.warning("Pod watch failed, retrying in %.1fs: %s", backoff, error)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
                version = None
