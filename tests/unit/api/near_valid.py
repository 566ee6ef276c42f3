"""A seeded generator of near-valid LLMServices, for checking that two judges agree.

It starts from one rich valid LLMService and applies one or two small mutations, chosen
from the CRD's own schema so that every field is reachable: a value of another JSON type,
a camelCase key spelt in snake_case, a duplicated list item, a number at a bound or one
past it, a string at its maximum length or one past it, a required field removed, a null,
a wrong enum value, an unknown field. Most results sit right at the edge of validity, which
is where two implementations of the same rules tend to differ.

The generator is deterministic for a given seed (its own `random.Random`), so a
disagreement found once is found again.
"""

from __future__ import annotations

import copy
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

Path = tuple[str | int, ...]

BASE: dict[str, Any] = {
    "apiVersion": "serving.llmservice.dev/v1alpha1",
    "kind": "LLMService",
    "metadata": {"name": "chat", "namespace": "default"},
    "spec": {
        "model": {
            "name": "Qwen/Qwen2.5-0.5B-Instruct",
            "revision": "main",
            "servedName": "qwen",
            "aliases": ["gpt-4o", "gpt-3.5-turbo"],
            "quantization": "none",
            "dtype": "auto",
            "maxModelLen": 8192,
            "ropeScaling": {
                "type": "yarn",
                "factor": 4,
                "originalMaxPositionEmbeddings": 32768,
                "theta": 1000000.0,
            },
            "hfTokenSecretRef": {"name": "hf-token", "key": "token"},
        },
        "engine": {
            "replicas": 2,
            "gpus": 2,
            "tensorParallelSize": 2,
            "gpuMemoryUtilization": 0.85,
            "maxNumSeqs": 128,
            "extraArgs": ["--enable-prefix-caching", "--max-num-batched-tokens=8192"],
            "env": [
                {"name": "VLLM_LOGGING_LEVEL", "value": "INFO"},
                {"name": "EXTRA", "valueFrom": {"secretKeyRef": {"name": "extra", "key": "k"}}},
            ],
            "resources": {
                "requests": {"cpu": "4", "memory": "32Gi"},
                "limits": {"cpu": 8, "memory": "64Gi"},
            },
            "autoscaling": {
                "enabled": True,
                "minReplicas": 0,
                "maxReplicas": 4,
                "metric": "InFlightRequests",
                "targetPerReplica": 4.5,
                "scaleUpStabilizationSeconds": 0,
                "scaleDownStabilizationSeconds": 120,
                "scaleToZeroAfterIdleSeconds": 600,
            },
            "nodeSelector": {"gpu.example.com/class": "a100"},
            "tolerations": [
                {"key": "dedicated", "operator": "Equal", "value": "llm", "effect": "NoSchedule"},
                {
                    "key": "spot",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 60,
                },
            ],
            "spreadAcrossNodes": "Required",
            "priorityClassName": "high",
            "terminationGracePeriodSeconds": 60,
            "shmSize": "8Gi",
        },
        "storage": {
            "enabled": True,
            "size": "200Gi",
            "storageClassName": "fast",
            "accessModes": ["ReadWriteMany", "ReadOnlyMany"],
            "mountPath": "/models",
        },
        "router": {
            "replicas": 2,
            "strategy": "LeastLoad",
            "sessionHeader": "X-Session",
            "loadBound": 1.5,
            "retries": 1,
            "timeouts": {
                "connectSeconds": 2,
                "firstByteSeconds": 60,
                "idleSeconds": 30.5,
                "totalSeconds": 600,
            },
            "maxRequestBytes": 1048576,
            "apiKeysSecretRef": {"name": "keys", "key": "keys.yaml"},
            "forwardAuthorization": False,
            "resources": {"limits": {"memory": "1Gi"}},
            "cors": {
                "allowedOrigins": ["https://chat.example.com", "http://localhost:3000"],
                "allowedHeaders": ["Authorization", "Content-Type", "X-Session"],
                "maxAgeSeconds": 600,
            },
        },
        "ingress": {
            "enabled": True,
            "className": "nginx",
            "host": "llm.example.com",
            "path": "/v1",
            "tls": {"secretName": "llm-tls"},
            "annotations": {"nginx.ingress.kubernetes.io/proxy-read-timeout": "3600"},
        },
        "monitoring": {"serviceMonitor": True, "interval": "15s", "labels": {"release": "prom"}},
        "networkPolicy": {
            "enabled": True,
            "monitoringNamespaceLabels": {"kubernetes.io/metadata.name": "monitoring"},
        },
    },
}


@dataclass(frozen=True)
class Site:
    """A place in the document the schema describes: a field, a list item or a map value."""

    path: Path
    schema: dict[str, Any]
    required: bool


@dataclass(frozen=True)
class Mutant:
    """One generated document and what was done to it, for the failure report."""

    description: str
    document: dict[str, Any]


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def _get(document: Any, path: Path) -> Any:
    for part in path:
        document = document[part]
    return document


def _exists(document: Any, path: Path) -> bool:
    try:
        _get(document, path)
    except (KeyError, IndexError, TypeError):
        return False
    return True


def _set(document: dict[str, Any], path: Path, value: Any) -> None:
    """Set `path`, creating missing parent objects (list items must exist already)."""
    node: Any = document
    for part in path[:-1]:
        if isinstance(part, str) and part not in node:
            node[part] = {}
        node = node[part]
    node[path[-1]] = value


def _sites(schema: dict[str, Any], document: Any, path: Path, required: bool) -> Iterator[Site]:
    yield Site(path, schema, required)
    for name, child in schema.get("properties", {}).items():
        value = document.get(name) if isinstance(document, dict) else None
        yield from _sites(child, value, (*path, name), name in schema.get("required", []))
    items = schema.get("items")
    if isinstance(items, dict) and isinstance(document, list):
        for index, item in enumerate(document):
            yield from _sites(items, item, (*path, index), False)
    values = schema.get("additionalProperties")
    if isinstance(values, dict) and isinstance(document, dict):
        for key, value in document.items():
            yield from _sites(values, value, (*path, key), False)


def _types(schema: dict[str, Any]) -> set[str]:
    if schema.get("x-kubernetes-int-or-string"):
        return {"integer", "string"}
    return {str(schema.get("type", "object"))}


class NearValidSpecs:
    """Mutations of `BASE`, driven by the CRD's `openAPIV3Schema`."""

    def __init__(self, openapi_schema: dict[str, Any], seed: int) -> None:
        self.rng = random.Random(seed)  # noqa: S311 - reproducible test data, not secrets
        spec_schema = openapi_schema["properties"]["spec"]
        self.sites = [
            site
            for site in _sites(spec_schema, BASE["spec"], ("spec",), True)
            if len(site.path) > 1
        ]
        self.mutations: list[tuple[str, Callable[[dict[str, Any]], str | None]]] = [
            ("type", self._change_type),
            ("snake_case", self._snake_case_key),
            ("duplicate", self._duplicate_item),
            ("bound", self._boundary_number),
            ("length", self._boundary_length),
            ("required", self._remove_required),
            ("null", self._null),
            ("enum", self._wrong_enum),
            ("unknown", self._unknown_field),
            ("pattern", self._pattern_edge),
            ("quantity", self._quantity_edge),
            ("child", self._child_rule_edge),
        ]

    def _pick(self, document: dict[str, Any], accept: Callable[[Site], bool]) -> Site | None:
        candidates = [site for site in self.sites if accept(site)]
        if not candidates:
            return None
        site = self.rng.choice(candidates)
        # Sites under a field the document lacks get their parents created on write.
        parent = site.path[:-1]
        if not _exists(document, parent) and any(isinstance(p, int) for p in parent):
            return None
        return site

    def _change_type(self, document: dict[str, Any]) -> str | None:
        site = self._pick(document, lambda s: True)
        if site is None:
            return None
        by_type: dict[str, list[Any]] = {
            "integer": ["2", 2.5, 2.0, True, [1], {"a": 1}],
            "number": ["0.5", True, [0.5], 1],
            "boolean": ["true", 1, "yes", 0],
            "string": [5, 1.5, True, ["x"], {"x": "y"}],
            "array": ["x", {"a": "b"}, 1],
            "object": ["x", ["a"], 1, True],
        }
        options = [v for t in _types(site.schema) for v in by_type.get(t, [])]
        value = self.rng.choice(options)
        _set(document, site.path, copy.deepcopy(value))
        return f"{_dotted(site.path)} = {value!r}"

    def _snake_case_key(self, document: dict[str, Any]) -> str | None:
        site = self._pick(
            document,
            lambda s: (
                isinstance(s.path[-1], str)
                and _snake(s.path[-1]) != s.path[-1]
                and _exists(document, s.path)
                and s.path[-1] in _parent_schema(self.sites, s.path).get("properties", {})
            ),
        )
        if site is None:
            return None
        parent = _get(document, site.path[:-1])
        key = str(site.path[-1])
        parent[_snake(key)] = parent.pop(key)
        return f"{_dotted(site.path)} renamed {_snake(key)}"

    def _duplicate_item(self, document: dict[str, Any]) -> str | None:
        site = self._pick(
            document,
            lambda s: (
                s.schema.get("type") == "array"
                and _exists(document, s.path)
                and bool(_get(document, s.path))
            ),
        )
        if site is None:
            return None
        items = _get(document, site.path)
        items.append(copy.deepcopy(self.rng.choice(items)))
        return f"{_dotted(site.path)} duplicated an item"

    def _boundary_number(self, document: dict[str, Any]) -> str | None:
        site = self._pick(
            document,
            lambda s: (
                s.schema.get("type") in ("integer", "number")
                and ("minimum" in s.schema or "maximum" in s.schema)
            ),
        )
        if site is None:
            return None
        schema = site.schema
        step = 1 if schema["type"] == "integer" else self.rng.choice([1, 0.01, 1e-9])
        bounds = [b for b in (schema.get("minimum"), schema.get("maximum")) if b is not None]
        bound = self.rng.choice(bounds)
        value = bound + self.rng.choice([-step, 0, step])
        if schema["type"] == "number" and self.rng.random() < 0.3:
            value = float(value)
        _set(document, site.path, value)
        return f"{_dotted(site.path)} = {value!r} (bounds {bounds})"

    def _boundary_length(self, document: dict[str, Any]) -> str | None:
        site = self._pick(
            document,
            lambda s: any(k in s.schema for k in ("maxLength", "maxItems", "maxProperties")),
        )
        if site is None:
            return None
        schema = site.schema
        delta = self.rng.choice([0, 1])
        if "maxLength" in schema:
            length = schema["maxLength"] + delta
            value: Any = _filler(_get_or(document, site.path, "a"), length)
        elif "maxItems" in schema:
            length = schema["maxItems"] + delta
            current = _get_or(document, site.path, [])
            value = _grow_list(current, length)
            if value is None:
                return None
        else:
            length = schema["maxProperties"] + delta
            value = {f"k{i}.example.com/key": "v" for i in range(length)}
        _set(document, site.path, value)
        return f"{_dotted(site.path)} has length {length}"

    def _remove_required(self, document: dict[str, Any]) -> str | None:
        site = self._pick(document, lambda s: s.required and _exists(document, s.path))
        if site is None:
            return None
        del _get(document, site.path[:-1])[site.path[-1]]
        return f"{_dotted(site.path)} removed"

    def _null(self, document: dict[str, Any]) -> str | None:
        site = self._pick(document, lambda s: _exists(document, s.path))
        if site is None:
            return None
        _set(document, site.path, None)
        return f"{_dotted(site.path)} = null"

    def _wrong_enum(self, document: dict[str, Any]) -> str | None:
        site = self._pick(document, lambda s: "enum" in s.schema)
        if site is None:
            return None
        valid = site.schema["enum"]
        choice = self.rng.choice(valid)
        value = self.rng.choice([choice.lower(), choice.upper(), choice + " ", "", "other"])
        if value in valid:
            return None
        _set(document, site.path, value)
        return f"{_dotted(site.path)} = {value!r}"

    def _unknown_field(self, document: dict[str, Any]) -> str | None:
        site = self._pick(
            document,
            lambda s: "properties" in s.schema and _exists(document, s.path),
        )
        if site is None:
            return None
        _get(document, site.path)["unknownField"] = "x"
        return f"{_dotted(site.path)}.unknownField added"

    def _pattern_edge(self, document: dict[str, Any]) -> str | None:
        site = self._pick(document, lambda s: s.schema.get("type") == "string")
        if site is None:
            return None
        value = self.rng.choice(
            [
                "",
                " ",
                "-x",
                "x-",
                "UPPER",
                "a.b",
                "a/b",
                "a_b",
                "1",
                "-1",
                "0",
                "1.5",
                "1e3",
                "16Gi",
                "16GB",
                "x\n",
                "abc\u00e9",
                "--max-model-len=4",
            ]
        )
        _set(document, site.path, value)
        return f"{_dotted(site.path)} = {value!r}"

    def _quantity_edge(self, document: dict[str, Any]) -> str | None:
        """Odd quantities, where two parsers are most likely to differ."""
        paths: list[Path] = [
            ("spec", "engine", "shmSize"),
            ("spec", "storage", "size"),
            ("spec", "engine", "resources", "requests", "cpu"),
            ("spec", "engine", "resources", "limits", "memory"),
            ("spec", "router", "resources", "limits", "memory"),
        ]
        path = self.rng.choice(paths)
        value = self.rng.choice(
            [
                *(".", "-", "+", "Ki", "e3", "1e", "1e1.5", "1.", "+.5", "-0", "0", "0Gi"),
                *("1n", "0.0000000001", "1e-10", "1E", "1e+3", "1ki", "16GB", "1.5Gi"),
                *("9223372036854775807", "99999999999999999999", "1e1000", "8Ei", "64Gi"),
                *("7Gi", "65Gi", "32Gi", "4", "8", "2000m", "1 "),
                *(0, -1, 1, 4, 8),
            ]
        )
        if path[-1] in ("shmSize", "size"):  # typed as strings, unlike resources
            value = str(value)
        _set(document, path, value)
        return f"{_dotted(path)} = {value!r}"

    def _child_rule_edge(self, document: dict[str, Any]) -> str | None:
        """Specs near the rules that protect the children: env, flags, tolerations."""
        engine = document["spec"]["engine"]
        choice = self.rng.randrange(4)
        if choice == 0:
            name = self.rng.choice(["HF_HOME", "HF_TOKEN", "HF_HOMES", "EXTRA", "DO_NOT_TRACK"])
            engine["env"] = [*engine.get("env", []), {"name": name, "value": "x"}]
            return f"spec.engine.env gets {name}"
        if choice == 1:
            arg = self.rng.choice(
                [
                    *("--max-model-len 8", "--max_model_len=8", "--max-model", "--max-mode=8"),
                    *("-tp", "-tp=2", "-t", "-tpx", "-q", "-qawq", "-pp 2", "--port=1"),
                    *("--hf_overrides.rope_theta=1", "--model-impl", "--maxmodel-len"),
                    *("--quantization-param-path=x", "--served", "--servedmodelname", "-O3"),
                ]
            )
            engine["extraArgs"] = [*engine.get("extraArgs", []), arg]
            return f"spec.engine.extraArgs gets {arg!r}"
        if choice == 2:
            toleration = {
                key: self.rng.choice(values)
                for key, values in {
                    "key": [None, "dedicated"],
                    "operator": [None, "Exists", "Equal"],
                    "value": [None, "", "llm"],
                    "effect": [None, "NoSchedule", "NoExecute"],
                    "tolerationSeconds": [None, 0, 30],
                }.items()
            }
            toleration = {k: v for k, v in toleration.items() if v is not None}
            engine["tolerations"] = [toleration]
            return f"spec.engine.tolerations = [{toleration}]"
        name = self.rng.choice(
            ["gpu", "nvidia.com/gpu", "kubernetes.io/gpu", "a.kubernetes.io/gpu", "Example.com/x"]
        )
        engine["gpuResourceName"] = name
        return f"spec.engine.gpuResourceName = {name!r}"

    def generate(self, count: int) -> list[Mutant]:
        mutants: list[Mutant] = []
        seen: set[str] = set()
        while len(mutants) < count:
            document = copy.deepcopy(BASE)
            notes = []
            for _ in range(self.rng.choice([1, 1, 1, 2])):
                _kind, mutate = self.rng.choice(self.mutations)
                note = mutate(document)
                if note is not None:
                    notes.append(note)
            key = repr(document)
            if notes and key not in seen:
                seen.add(key)
                mutants.append(Mutant("; ".join(notes), document))
        return mutants


def _dotted(path: Path) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _parent_schema(sites: list[Site], path: Path) -> dict[str, Any]:
    for site in sites:
        if site.path == path[:-1]:
            return site.schema
    return {}


def _get_or(document: Any, path: Path, default: Any) -> Any:
    return _get(document, path) if _exists(document, path) else default


def _filler(current: Any, length: int) -> str:
    """A string of `length` characters in the style of `current`, so only its length is off."""
    text = current if isinstance(current, str) and current else "a"
    if text.startswith("/"):
        return "/" + "a" * (length - 1)
    if re.fullmatch(r"[0-9]+[a-zA-Z]*", text):
        return "1" * length
    return "a" * length


def _grow_list(current: list[Any], length: int) -> list[Any] | None:
    """`length` distinct items shaped like those of `current`."""
    if not current:
        return None
    sample = current[0]
    if isinstance(sample, str):
        if sample.startswith("Read"):
            return None
        return [
            f"{sample}-{i}" if not sample.startswith("--") else f"--flag-{i}" for i in range(length)
        ]
    if isinstance(sample, dict) and "name" in sample:
        return [dict(sample, name=f"{sample['name']}_{i}") for i in range(length)]
    if isinstance(sample, dict) and "key" in sample:
        return [dict(sample, key=f"{sample['key']}-{i}") for i in range(length)]
    return None
