"""`llmservice render FILE`: print every child manifest, as `helm template` does.

Invalid input prints every problem with its field path and exits 1; never a traceback.
"""

from __future__ import annotations

import argparse
import sys

import yaml

from llmservice.api.validation import InvalidLLMService, parse_llmservice
from llmservice.render import render_all


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llmservice render",
        description="Print the child manifests of the LLMService(s) in FILE ('-' for stdin).",
    )
    parser.add_argument("file", help="YAML file with one or more LLMService documents")
    parser.add_argument("--namespace", help="namespace for objects that do not set one")
    return parser


def _read(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        documents = [doc for doc in yaml.safe_load_all(_read(args.file)) if doc is not None]
    except OSError as error:
        print(f"llmservice render: cannot read {args.file}: {error.strerror}", file=sys.stderr)
        return 1
    except yaml.YAMLError as error:
        print(f"llmservice render: {args.file} is not valid YAML: {error}", file=sys.stderr)
        return 1
    if not documents:
        print(f"llmservice render: {args.file} holds no documents", file=sys.stderr)
        return 1
    objects = []
    failed = False
    for index, document in enumerate(documents):
        if args.namespace and isinstance(document, dict):
            document.setdefault("metadata", {}).setdefault("namespace", args.namespace)
        try:
            objects += render_all(parse_llmservice(document))
        except InvalidLLMService as invalid:
            failed = True
            label = f"{args.file} (document {index + 1})" if len(documents) > 1 else args.file
            print(f"{label} is not a valid LLMService:", file=sys.stderr)
            for field_error in invalid.errors:
                print(f"  {field_error}", file=sys.stderr)
    if failed:
        return 1
    sys.stdout.write(yaml.safe_dump_all(objects, sort_keys=False, explicit_start=True, width=100))
    return 0
