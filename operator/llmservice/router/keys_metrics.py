"""Prometheus metrics of the API keys file, read from `ApiKeysFile` at scrape time.

=================================================  =============================================
``llmservice_router_api_keys_reload_failures_total``  new keys files rejected
``llmservice_router_api_keys_file_valid``             1: the file on disk is the one in use;
                                                      0: its last change was rejected and the
                                                      router keeps the last good keys
``llmservice_router_api_keys``                        number of keys in use
=================================================  =============================================

Registered only when the router has a keys file. The operator reads
``llmservice_router_api_keys_file_valid`` from every ready router Pod to tell the user.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from llmservice.router.keys_reload import ApiKeysFile

__all__ = ["FILE_VALID", "ApiKeysMetrics"]

FILE_VALID = "llmservice_router_api_keys_file_valid"


class ApiKeysMetrics(Collector):
    """The state of one `ApiKeysFile` as metric families."""

    def __init__(self, keys_file: ApiKeysFile) -> None:
        self.keys_file = keys_file

    def collect(self) -> Iterator[Metric]:
        keys_file = self.keys_file
        yield CounterMetricFamily(
            "llmservice_router_api_keys_reload_failures",
            "New API keys files rejected (the last good keys stayed in use).",
            value=keys_file.reload_failures,
        )
        yield GaugeMetricFamily(
            FILE_VALID,
            "1 when the API keys file on disk is the one in use, 0 when its last change was"
            " rejected.",
            value=1 if keys_file.valid else 0,
        )
        yield GaugeMetricFamily(
            "llmservice_router_api_keys", "API keys in use.", value=len(keys_file.keys)
        )
