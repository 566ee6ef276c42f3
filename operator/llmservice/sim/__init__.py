"""The vLLM simulator: vLLM's OpenAI API, metrics and flags on a CPU, for tests and benches.

Start it like vLLM (`llmservice sim --model M --port 8000 ...`, see `config`), or in-process:

    from llmservice.sim import SimConfig, SimServer

    async with SimServer(SimConfig(model="m", time_scale=0.01)) as sim:
        ...  # sim.url, sim.app.engine, sim.app.metrics

`create_app(config)` returns the bare ASGI app for any ASGI server.
"""

from llmservice.sim.app import SimApp, create_app
from llmservice.sim.config import PROFILES, ParsedArgs, SimConfig, TimingProfile, parse_args
from llmservice.sim.engine import Engine, Sequence
from llmservice.sim.metrics import SimMetrics
from llmservice.sim.server import SimServer

__all__ = [
    "PROFILES",
    "Engine",
    "ParsedArgs",
    "Sequence",
    "SimApp",
    "SimConfig",
    "SimMetrics",
    "SimServer",
    "TimingProfile",
    "create_app",
    "parse_args",
]
