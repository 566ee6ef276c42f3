"""The one `llmservice` command.

Each subcommand lives in its own module and parses its own arguments, so this file only
maps names to entry points. Entry points are imported lazily: `llmservice render` must not
pay for importing kopf, and a broken optional part never breaks the others.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence

# name -> ("module", "function", one-line help). The function takes argv and returns an exit code.
SUBCOMMANDS: dict[str, tuple[str, str, str]] = {
    "crd": ("llmservice.api.crd_cli", "main", "generate the LLMService CRD from the models"),
    "render": ("llmservice.render.cli", "main", "print every child manifest of an LLMService"),
    "docs": ("llmservice.api.reference", "main", "print the LLMService field reference"),
    "sim": ("llmservice.sim.cli", "main", "run the vLLM simulator"),
    "router": ("llmservice.router.cli", "main", "run the session-affinity router"),
    "operator": ("llmservice.controller.cli", "main", "run the operator"),
    "sandbox": ("llmservice.sandbox.cli", "main", "local control plane: up | down | status | env"),
}


def _usage() -> str:
    lines = ["usage: llmservice COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, _, help_) in SUBCOMMANDS.items()]
    lines += ["", "Run `llmservice COMMAND --help` for the options of one command."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in SUBCOMMANDS:
        print(f"llmservice: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name, function_name, _ = SUBCOMMANDS[name]
    entry: Callable[[list[str]], int] = getattr(importlib.import_module(module_name), function_name)
    return entry(rest)


if __name__ == "__main__":
    raise SystemExit(main())
