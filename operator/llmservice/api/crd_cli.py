"""`llmservice crd`: write (or check) the CRD generated from the API models."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from llmservice.api.crd import crd_yaml


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="llmservice crd", description="Print the LLMService CRD generated from the models."
    )
    parser.add_argument("--output", type=Path, help="write to this file instead of stdout")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if --output differs from the generated CRD"
    )
    args = parser.parse_args(argv)
    text = crd_yaml()
    if args.output is None:
        sys.stdout.write(text)
        return 0
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is stale: run `make crds`", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(text, encoding="utf-8")
    print(f"Wrote {args.output}")
    return 0
