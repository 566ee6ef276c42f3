"""What the renderer puts in the Pods is what the programs accept.

The router Deployment runs `llmservice router` with rendered args, and the simulator takes
the engine's vLLM args verbatim in the sandbox: a renamed flag must fail here, not at run time.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from llmservice.api import LLMService
from llmservice.api.validation import parse_llmservice
from llmservice.render import engine, router
from llmservice.router.cli import build_config, parser
from llmservice.sim.config import parse_args
from tests.unit.golden import EXAMPLES


def _service(example: Path) -> LLMService:
    return parse_llmservice(yaml.safe_load(example.read_text(encoding="utf-8")))


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.stem for e in EXAMPLES])
def test_rendered_router_args_parse(example: Path) -> None:
    service = _service(example)
    args = router.router_args(service)
    assert args[0] == "router"
    config = build_config(parser().parse_args(args[1:]))
    assert config.served_model_name == engine.served_name(service.spec.model)


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.stem for e in EXAMPLES])
def test_rendered_engine_args_start_the_simulator(example: Path) -> None:
    service = _service(example)
    parsed = parse_args(engine.engine_args(service))
    assert parsed.config.served_model_names[0] == engine.served_name(service.spec.model)
    assert parsed.config.max_num_seqs == service.spec.engine.max_num_seqs
