"""Log lines: JSON objects with the object's namespace and name, or plain text."""

from __future__ import annotations

import json
import logging

from llmservice.logs import JsonFormatter, TextFormatter, about


def record(message: str, **extra: object) -> logging.LogRecord:
    entry = logging.LogRecord("llmservice.x", logging.WARNING, __file__, 1, message, (), None)
    entry.__dict__.update(extra)
    return entry


def test_json_line_carries_namespace_and_name() -> None:
    line = JsonFormatter().format(record("Applied Deployment chat-engine", **about("ns", "chat")))
    entry = json.loads(line)
    assert entry["namespace"] == "ns"
    assert entry["name"] == "chat"
    assert entry["level"] == "warning"
    assert entry["logger"] == "llmservice.x"
    assert entry["msg"] == "Applied Deployment chat-engine"
    assert "\n" not in line


def test_kopf_object_references_are_read_too() -> None:
    kopf_ref = {"apiVersion": "v1", "kind": "LLMService", "namespace": "ns", "name": "chat"}
    entry = json.loads(JsonFormatter().format(record("Handler succeeded", k8s_ref=kopf_ref)))
    assert (entry["namespace"], entry["name"]) == ("ns", "chat")


def test_lines_about_nothing_have_no_object_fields() -> None:
    entry = json.loads(JsonFormatter().format(record("started")))
    assert "namespace" not in entry
    assert "name" not in entry


def test_text_lines_start_with_the_object() -> None:
    line = TextFormatter().format(record("Applied Service chat", **about("ns", "chat")))
    assert line.endswith("WARNING llmservice.x: [ns/chat] Applied Service chat")
