"""The run record: the last outcome of each command, and of each target under it, in `state_dir/runs/`.

One small JSON file per command, replaced atomically, so `opsctl status`, notifications and
metrics read the current state directly instead of parsing the audit trail or console output.
A target the last run did not touch keeps what an earlier run recorded for it.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from opsctl.durable import replace_synced


@dataclass(frozen=True)
class TargetRun:
    """How a command last ended on one target."""

    target: str
    location: str
    ok: bool
    finished_at: str
    duration_s: float
    error: str | None = None
    hint: str | None = None


@dataclass(frozen=True)
class CommandRun:
    """How a command last ended, and each target's own last outcome under it."""

    command: str
    outcome: str
    exit_code: int
    finished_at: str
    duration_s: float
    error: str | None
    targets: tuple[TargetRun, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "targets": {t.target: asdict(t) for t in self.targets}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CommandRun:
        targets = tuple(TargetRun(**t) for t in (data.get("targets") or {}).values())
        return cls(**{**data, "targets": targets})


def runs_dir(state_dir: Path) -> Path:
    return state_dir / "runs"


def record(state_dir: Path, run: CommandRun) -> None:
    """Store the run, keeping earlier results of targets it did not touch."""
    folder = runs_dir(state_dir)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    earlier = read(state_dir, run.command)
    touched = {t.target for t in run.targets}
    kept = tuple(t for t in (earlier.targets if earlier else ()) if t.target not in touched)
    merged = CommandRun(**{**asdict(run), "targets": kept + run.targets})
    document = json.dumps(merged.to_json(), indent=1, sort_keys=True) + "\n"
    replace_synced(_path(state_dir, run.command), document.encode())


def read(state_dir: Path, command: str) -> CommandRun | None:
    """The command's last run, or None when it never ran (or its record cannot be read)."""
    try:
        return CommandRun.from_json(json.loads(_path(state_dir, command).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def _path(state_dir: Path, command: str) -> Path:
    return runs_dir(state_dir) / (re.sub(r"[^a-z0-9]+", "-", command.lower()).strip("-") + ".json")
