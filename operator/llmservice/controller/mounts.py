"""Why Pods wait in ContainerCreating: the kubelet's FailedMount Events, asked sparingly.

A Pod whose volume cannot be mounted (an API-key Secret that does not exist) says so only
in Events. They are listed only while some Pod of an LLMService waits in ContainerCreating,
and at most once per namespace every `ttl` seconds: in a real cluster a Pod waits so for
minutes while its image is pulled, and every reconcile meanwhile would list them again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from kubernetes import client

from llmservice.controller.kube import ClusterAPI

log = logging.getLogger(__name__)
TTL_SECONDS = 10.0


class FailedMountLookup:
    """Pod name -> latest FailedMount message, per namespace, cached for `ttl` seconds."""

    def __init__(
        self, ttl: float = TTL_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.clock = clock
        self._cache: dict[str, tuple[float, dict[str, str]]] = {}

    async def get(self, api: ClusterAPI, namespace: str) -> dict[str, str]:
        cached = self._cache.get(namespace)
        now = self.clock()
        if cached is not None and now - cached[0] < self.ttl:
            return cached[1]
        try:
            found = await api.failed_mounts(namespace)
        except client.ApiException as error:
            # Only the reason shown is at stake; the Pod still counts as not ready.
            log.warning("Could not list FailedMount events in %s: %s", namespace, error.reason)
            found = {}
        self._cache[namespace] = (now, found)
        return found
