"""Asking the installed vLLM's own parser (see `vllm_probe`), from the project's interpreter."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from llmservice.sandbox.versions import VllmLayout

PROBE = Path(__file__).with_name("vllm_probe.py")
TIMEOUT_SECONDS = 600.0


def ask(layout: VllmLayout, command: str, request: Any) -> Any:
    """Run one batch through vllm_probe.py on the engine's interpreter; its JSON answer."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env |= {"HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}
    result = subprocess.run(
        [str(layout.python), str(PROBE), command],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        env=env,
        timeout=TIMEOUT_SECONDS,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"vllm_probe.py {command} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.splitlines()[-1])
