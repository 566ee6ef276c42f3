"""The vLLM release this project targets, named once.

The default engine image is this release's `vllm/vllm-openai` tag, the sandbox installs this
release's CPU build for real engine Pods (`llmservice sandbox build --engine vllm`), the
simulator reports it at `/version`, and the conformance suite (`make conformance`) checks
the rendered args, the simulator and the router against it. A bump is this one line, then
`make vllm-flags` (the owned flags' spellings are taken from that release's parser) and
`make crds golden docs`; `make conformance` fails until the rest agrees.
"""

from __future__ import annotations

VLLM_VERSION = "0.32.0"
