"""Whether the router Pods accepted their API keys file, from their own metrics.

A router that rejects a changed keys file keeps serving with the last good keys and says so
in ``llmservice_router_api_keys_file_valid`` (0). The operator cannot read the Secret (it
never reads Secrets), so it asks the routers: an HTTP GET of ``/metrics`` on each ready
router Pod's IP, only for LLMServices with `router.apiKeysSecretRef`, at most every
`scrape_interval` seconds per LLMService, each bounded by `SCRAPE_TIMEOUT_SECONDS`. A Pod
that does not answer, or does not report the gauge, counts as not rejecting: the condition
speaks only of what a router said.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field

import httpx
from prometheus_client.parser import text_string_to_metric_families

from llmservice.router.keys_metrics import FILE_VALID

__all__ = ["RouterKeysTracker", "keys_file_valid"]

SCRAPE_TIMEOUT_SECONDS = 2.0


def keys_file_valid(text: str) -> bool | None:
    """The router's own verdict on its keys file, from its metrics; None when not reported."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == FILE_VALID:
                return sample.value >= 1
    return None


@dataclass
class _Service:
    last_scrape: float = float("-inf")
    valid: dict[str, bool] = field(default_factory=dict)  # pod name -> verdict


class RouterKeysTracker:
    """Scrapes router Pods on a schedule; counts those that rejected their keys file."""

    def __init__(self, http: httpx.AsyncClient, scrape_interval: float = 10.0) -> None:
        self._http = http
        self._scrape_interval = scrape_interval
        self._services: dict[tuple[str, str], _Service] = {}

    def forget(self, namespace: str, name: str) -> None:
        self._services.pop((namespace, name), None)

    async def _verdict(self, url: str) -> bool | None:
        try:
            response = await self._http.get(url, timeout=SCRAPE_TIMEOUT_SECONDS)
            response.raise_for_status()
            return keys_file_valid(response.text)
        except (httpx.HTTPError, ValueError):  # unreachable, or not Prometheus text
            return None

    async def rejecting(
        self, namespace: str, name: str, targets: Iterable[tuple[str, str]], now: float
    ) -> int:
        """Ready router Pods (name, metrics URL) that last reported a rejected keys file."""
        targets = list(targets)
        if not targets:
            self.forget(namespace, name)
            return 0
        state = self._services.setdefault((namespace, name), _Service())
        if now - state.last_scrape >= self._scrape_interval:
            state.last_scrape = now
            verdicts = await asyncio.gather(*(self._verdict(url) for _, url in targets))
            state.valid = {
                pod: verdict
                for (pod, _), verdict in zip(targets, verdicts, strict=True)
                if verdict is not None
            }
        return sum(1 for pod, _ in targets if state.valid.get(pod) is False)
