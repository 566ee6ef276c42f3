"""The vLLM release this project targets, named once.

The default engine image is this release's `vllm/vllm-openai` tag, the sandbox installs this
release's CPU build for real engine Pods, the simulator reports it at `/version`, and the
conformance suite (`make conformance`) checks the rendered args, the simulator and the
router against it. Bumping it is a one-line change here, then `make conformance` (which
also regenerates nothing by itself: it fails until `make vllm-flags` is rerun if the
parser's flags moved).
"""

from __future__ import annotations

VLLM_VERSION = "0.32.0"
