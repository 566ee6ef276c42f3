"""`llmservice operator`: run the operator (kopf) against the current cluster.

Credentials: in a Pod, its ServiceAccount; elsewhere, the kubeconfig in $KUBECONFIG.
One replica runs standalone; for more, pass `--peering NAME` (kopf's peering keeps one
active) after installing kopf's peering CRD. Logs are JSON, one object per line, with the
LLMService's `namespace` and `name` on every line about one; `--log-format text` for a
terminal.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys
from typing import Any

import httpx
import kopf
from kubernetes import client, config
from prometheus_client import CollectorRegistry

from llmservice import logs
from llmservice.controller.autoscaler import Autoscaler
from llmservice.controller.handlers import OperatorState, configure, register
from llmservice.controller.kube import ClusterAPI
from llmservice.controller.metrics import OperatorMetrics, serve_metrics
from llmservice.controller.periodic import PeriodicReconciler
from llmservice.controller.router_keys import RouterKeysTracker
from llmservice.controller.store import ClusterStore
from llmservice.controller.throughput import ThroughputTracker


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llmservice operator", description=__doc__)
    parser.add_argument(
        "--namespace",
        action="append",
        default=[],
        help="watch only this namespace (repeatable); default: all namespaces",
    )
    parser.add_argument("--resync-interval", "--timer-interval", dest="resync_interval",
                        type=float, default=10.0,
                        help="seconds between periodic reconciles of each LLMService")  # fmt: skip
    parser.add_argument("--scrape-interval", type=float, default=10.0,
                        help="seconds between scrapes of the engine Pods (throughput) and of"
                             " the router Pods (API keys file accepted)")  # fmt: skip
    parser.add_argument("--autoscale-interval", type=float, default=3.0,
                        help="seconds between autoscaler evaluations (scrapes of the router"
                             " Pods) of each LLMService with engine.autoscaling; short, so"
                             " a request at zero replicas wakes the engine quickly")  # fmt: skip
    parser.add_argument("--status-interval", type=float, default=30.0,
                        help="minimum seconds between throughput writes to the status")  # fmt: skip
    parser.add_argument("--liveness-host", default="0.0.0.0")  # noqa: S104 - probed by kubelet
    parser.add_argument("--liveness-port", type=int, default=8081)
    parser.add_argument("--metrics-host", default="0.0.0.0",  # noqa: S104 - scraped from Pods
                        help="address of the /metrics endpoint")  # fmt: skip
    parser.add_argument("--metrics-port", type=int, default=0,
                        help="port of the Prometheus /metrics endpoint (0: off)")  # fmt: skip
    parser.add_argument("--peering", help="kopf peering name (enables several replicas)")
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    parser.add_argument("--log-format", choices=logs.FORMATS, default="json",
                        help="json: one object per line; text: plain lines")  # fmt: skip
    return parser


def cluster_api_client() -> client.ApiClient:
    """An API client from the Pod's ServiceAccount, or from $KUBECONFIG outside a cluster."""
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        configuration = client.Configuration()
        config.load_incluster_config(  # type: ignore[no-untyped-call]
            client_configuration=configuration
        )
        return client.ApiClient(configuration)
    api: client.ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=os.environ.get("KUBECONFIG")
    )
    return api


async def run(args: argparse.Namespace) -> None:
    instance = os.environ.get("POD_NAME") or socket.gethostname()
    registry = kopf.OperatorRegistry()
    async with httpx.AsyncClient() as http:
        store = ClusterStore()
        metrics = OperatorMetrics(CollectorRegistry(), store.llmservices)
        state = OperatorState(
            api=ClusterAPI(cluster_api_client(), instance=instance, on_error=metrics.api_error),
            throughput=ThroughputTracker(
                http, args.scrape_interval, args.status_interval, on_scrape=metrics.scraped
            ),
            router_keys=RouterKeysTracker(http, args.scrape_interval),
            # A little under the tick, so a tick that comes early by a few milliseconds
            # still scrapes.
            autoscaler=Autoscaler(http, 0.8 * args.autoscale_interval),
            store=store,
            metrics=metrics,
        )
        register(registry, state)
        kopf.on.login(registry=registry)(kopf.login_via_client)

        @kopf.on.startup(registry=registry)
        def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
            configure(settings, instance)

        periodic = PeriodicReconciler(
            state.store.llmservices, state.reconcile, args.resync_interval
        )
        autoscale = PeriodicReconciler(state.autoscaled, state.reconcile, args.autoscale_interval)
        resync = asyncio.create_task(periodic.run())
        autoscaling = asyncio.create_task(autoscale.run())
        runner = None
        if args.metrics_port:
            runner = await serve_metrics(metrics.registry, args.metrics_host, args.metrics_port)
        try:
            await kopf.operator(
                registry=registry,
                clusterwide=not args.namespace,
                namespaces=args.namespace,
                standalone=args.peering is None,
                peering_name=args.peering,
                liveness_endpoint=f"http://{args.liveness_host}:{args.liveness_port}/healthz",
            )
        finally:
            resync.cancel()
            autoscaling.cancel()
            await asyncio.gather(resync, autoscaling, return_exceptions=True)
            if runner is not None:
                await runner.cleanup()


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    # kopf's own loggers go through the same root handler, so its lines are JSON too.
    logs.configure(logging.DEBUG if args.verbose else logging.INFO, args.log_format)
    if not args.verbose:
        # One line per handler run and per scrape would drown the lines that matter.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
        logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        asyncio.run(run(args))
    except KeyboardInterrupt:
        return 0
    except config.ConfigException as error:
        print(
            f"llmservice operator: no cluster credentials ({error}); run in a Pod with a"
            " ServiceAccount, or set KUBECONFIG to a valid kubeconfig",
            file=sys.stderr,
        )
        return 2
    return 0
