"""How vLLM"s parser spells the flags the operator owns: generated, do not edit.

Written by `make vllm-flags` (tests/conformance/owned_flags.py) from the argument parser of
the vLLM release in `llmservice.vllm_release`; the conformance suite fails when the parser
and this file disagree. For each flag in `OWNED_ENGINE_FLAGS`, each of its option strings
(aliases included) with the shortest prefix of it that the parser takes for that flag or
refuses as ambiguous: argparse accepts unambiguous abbreviations, and vLLM stops on
ambiguous ones, so the CRD refuses every prefix from that one on, with "_" for "-" too.
"""

from __future__ import annotations

OWNED_FLAG_SPELLINGS: dict[str, tuple[tuple[str, str], ...]] = {
    "download-dir": (("--download-dir", "--do"),),
    "dtype": (("--dtype", "--dt"),),
    "gpu-memory-utilization": (
        ("--device-memory-utilization", "--de"),
        ("--gpu-memory-utilization", "--gp"),
    ),
    "hf-overrides": (("--hf-overrides", "--hf"),),
    "host": (("--host", "--ho"),),
    "max-model-len": (("--max-model-len", "--ma"),),
    "max-num-seqs": (("--max-num-seqs", "--ma"),),
    "model": (("--model", "--mo"),),
    "otlp-traces-endpoint": (("--otlp-traces-endpoint", "--ot"),),
    "pipeline-parallel-size": (("--pipeline-parallel-size", "--pi"), ("-pp", "-p")),
    "port": (("--port", "--po"),),
    "quantization": (("--quantization", "--qu"), ("-q", "-q")),
    "revision": (("--revision", "--re"),),
    "scheduling-policy": (("--scheduling-policy", "--sc"),),
    "served-model-name": (("--served-model-name", "--se"),),
    "tensor-parallel-size": (("--tensor-parallel-size", "--te"), ("-tp", "-t")),
}
