"""The state file of a running sandbox: its settings, ports and processes.

It is written after every process start, so a sandbox that failed half-way or whose
`up` was interrupted can still be torn down by `down`, process by process, by pid.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from llmservice.sandbox.components import Ports
from llmservice.sandbox.layout import Settings
from llmservice.sandbox.processes import ProcessRecord


@dataclass
class SandboxState:
    """What `up` started, in start order; `down` stops it in reverse."""

    settings: Settings
    ports: Ports
    kubernetes_version: str
    processes: list[ProcessRecord] = field(default_factory=list)

    def record(self, process: ProcessRecord, path: Path) -> None:
        self.processes.append(process)
        self.save(path)

    def process(self, name: str) -> ProcessRecord | None:
        return next((p for p in self.processes if p.name == name), None)

    def save(self, path: Path) -> None:
        data: dict[str, Any] = {
            "settings": asdict(self.settings),
            "ports": asdict(self.ports),
            "kubernetes_version": self.kubernetes_version,
            "processes": [p.to_json() for p in self.processes],
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(data, indent=2), encoding="utf-8")
        os.replace(temporary, path)

    @classmethod
    def load(cls, path: Path) -> SandboxState | None:
        """The saved state, or None when there is none or it is unreadable."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(
                settings=Settings(**data["settings"]),
                ports=Ports(**data["ports"]),
                kubernetes_version=str(data["kubernetes_version"]),
                processes=[ProcessRecord.from_json(p) for p in data["processes"]],
            )
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return None
