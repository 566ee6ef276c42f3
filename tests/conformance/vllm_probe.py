"""Questions for vLLM's own argument parser, answered in JSON: runs on the engine's interpreter.

    python vllm_probe.py parse    < [[arg, ...], ...]      -> [{"ok", "error", "values"}, ...]
    python vllm_probe.py spellings < ["flag", ...]          -> {"version", "allow_abbrev", "flags"}

The engine's virtualenv is not the project's (it holds torch and vLLM's pins), so the tests
ask through this script, which imports only vLLM and the standard library. One process
answers a whole batch: importing vLLM takes seconds.

`parse` parses each argv as the image's `vllm serve` does (a positional model tag wins over
`--model`), then runs vLLM's own pre-load checks of serve args.

`spellings` lists, for each long flag, every command-line spelling vLLM's parser resolves to
that flag's option: its option strings, their underscore forms, and each prefix argparse
accepts as an abbreviation; and the prefixes it refuses as ambiguous (vLLM stops on those);
then every option string of the other flags.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from typing import Any

import vllm
from vllm.entrypoints.launchers.cli_args import make_arg_parser, validate_parsed_serve_args
from vllm.utils.argparse_utils import FlexibleArgumentParser

MIN_PREFIX = 2  # "-t": a dash and one letter


def new_parser() -> FlexibleArgumentParser:
    return make_arg_parser(FlexibleArgumentParser(prog="vllm serve", exit_on_error=False))


def _plain(value: Any) -> Any:
    """A JSON-friendly copy of a parsed value (dataclasses, enums and paths as strings)."""
    try:
        json.dumps(value)
    except TypeError:
        if isinstance(value, dict):
            return {str(k): _plain(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [_plain(v) for v in value]
        return repr(value)
    return value


def parse(argvs: list[list[str]]) -> list[dict[str, Any]]:
    answers = []
    for argv in argvs:
        parser = new_parser()
        errors = io.StringIO()
        try:
            with contextlib.redirect_stderr(errors):
                namespace = parser.parse_args(argv)
            if namespace.model_tag is not None:  # what `vllm serve` does first
                namespace.model = namespace.model_tag
            validate_parsed_serve_args(namespace)
        except (SystemExit, argparse.ArgumentError, ValueError, TypeError) as exc:
            message = errors.getvalue().strip() or str(exc)
            answers.append({"ok": False, "error": message, "values": {}})
            continue
        values = {k: _plain(v) for k, v in vars(namespace).items()}
        answers.append({"ok": True, "error": "", "values": values})
    return answers


def _resolve(parser: FlexibleArgumentParser, spelling: str) -> str | None:
    """The dest of the option `spelling` selects, "" when ambiguous, None when none."""
    # FlexibleArgumentParser turns underscores into dashes before argparse sees a flag.
    if spelling.startswith("--"):
        spelling = "--" + spelling[2:].replace("_", "-")
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            found = parser._parse_optional(spelling)
    except (SystemExit, argparse.ArgumentError):
        return ""  # "ambiguous option: could match ..."
    if not found:
        return None
    action = found[0][0] if isinstance(found, list) else found[0]
    return None if action is None else str(action.dest)


def spellings(flags: list[str]) -> dict[str, Any]:
    parser = new_parser()
    by_flag: dict[str, Any] = {}
    for flag in flags:
        action = parser._option_string_actions.get(f"--{flag}")
        if action is None:
            by_flag[flag] = None
            continue
        candidates: set[str] = set()
        for option in action.option_strings:
            for end in range(MIN_PREFIX, len(option) + 1):
                prefix = option[:end]
                if prefix.strip("-"):
                    candidates |= {prefix, prefix.replace("-", "_").replace("__", "--", 1)}
        accepted = sorted(c for c in candidates if _resolve(parser, c) == action.dest)
        ambiguous = sorted(c for c in candidates if _resolve(parser, c) == "")
        by_flag[flag] = {
            "dest": action.dest,
            "option_strings": sorted(action.option_strings),
            "accepted": accepted,
            "ambiguous": ambiguous,
        }
    owned = {f"--{flag}" for flag in flags}
    others = sorted(
        option
        for option, action in parser._option_string_actions.items()
        if not owned & set(action.option_strings)
    )
    return {
        "version": vllm.__version__,
        "allow_abbrev": parser.allow_abbrev,
        "flags": by_flag,
        "other_options": others,
    }


def main() -> int:
    command = sys.argv[1]
    request = json.load(sys.stdin)
    answer = parse(request) if command == "parse" else spellings(request)
    sys.stdout.write(json.dumps(answer) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
