"""On-disk records of the processes the runtime started, one file per Pod.

They outlive the runtime itself, so `sandbox down` can stop every Pod process by pid even
when the runtime was killed before it could.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from llmservice.sandbox.processes import ProcessRecord, stop_all


@dataclass(frozen=True)
class PodProcess:
    """The process started for one Pod, and where it listens."""

    uid: str
    namespace: str
    name: str
    component: str
    ip: str
    port: int
    process: ProcessRecord

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["process"] = self.process.to_json()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PodProcess:
        fields = {k: v for k, v in data.items() if k != "process"}
        return cls(**fields, process=ProcessRecord.from_json(data["process"]))


def record_path(directory: Path, uid: str) -> Path:
    return directory / f"{uid}.json"


def save(directory: Path, pod: PodProcess) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    path = record_path(directory, pod.uid)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(pod.to_json(), indent=2), encoding="utf-8")
    os.replace(temporary, path)


def remove(directory: Path, uid: str) -> None:
    record_path(directory, uid).unlink(missing_ok=True)


def load_all(directory: Path) -> dict[str, PodProcess]:
    """Every readable record, by Pod uid."""
    found: dict[str, PodProcess] = {}
    if not directory.is_dir():
        return found
    for path in sorted(directory.glob("*.json")):
        try:
            pod = PodProcess.from_json(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, KeyError, TypeError):
            continue
        found[pod.uid] = pod
    return found


def stop_all_pod_processes(directory: Path) -> None:
    """Stop every recorded Pod process by pid, all at once, and forget them."""
    recorded = load_all(directory)
    stop_all([pod.process for pod in recorded.values()])
    for uid in recorded:
        remove(directory, uid)
