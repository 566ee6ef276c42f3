"""`llmservice sim`: start one simulated vLLM replica with `vllm serve`'s arguments."""

from __future__ import annotations

import asyncio
import logging
import os
import sys

import uvloop

from llmservice.sim.app import create_app
from llmservice.sim.config import parse_args
from llmservice.sim.server import bind_socket, uvicorn_server

__all__ = ["main"]

log = logging.getLogger("llmservice.sim")


def _write_port_file(path: str, port: int) -> None:
    """Write atomically, so a reader never sees a partial number."""
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="ascii") as f:
        f.write(f"{port}\n")
    os.replace(tmp, path)


def main(argv: list[str]) -> int:
    parsed = parse_args(argv)
    config = parsed.config
    logging.basicConfig(
        level=logging.INFO,
        format="%(levelname)s %(asctime)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if parsed.ignored:
        log.info("Ignoring vLLM flags the simulator does not model: %s", " ".join(parsed.ignored))
    try:
        sock = bind_socket(config.host, config.port)
    except OSError as exc:
        log.error("Cannot listen on %s:%d: %s", config.host, config.port, exc)
        return 1
    port = sock.getsockname()[1]
    app = create_app(config)
    log.info(
        "Simulating vLLM model %s (served as %s) on http://%s:%d as replica %s; "
        "profile %s, time scale %g, max_num_seqs %d, max_model_len %d, %d cache blocks",
        config.model,
        ", ".join(config.model_names),
        config.host,
        port,
        config.replica_name,
        config.profile.name,
        config.time_scale,
        config.max_num_seqs,
        config.max_model_len,
        config.cache_blocks,
    )
    if parsed.port_file:
        _write_port_file(parsed.port_file, port)
    server = uvicorn_server(app, access_log=config.access_log)
    with sock, asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(server.serve(sockets=[sock]))
    return 0
