"""Where the scheduled jobs that work in turns are: which part of each repository the next check
reads, and which target and database the next verify proves.

restic's `check --read-data-subset n/t` reads part n of t; advancing n after each sound check
reads every pack once per t checks, where a random subset could leave a pack unread for years.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from opsctl.durable import replace_synced
from opsctl.policy.model import Policy
from opsctl.policy.trust import read_regular


@dataclass(frozen=True)
class Rotation:
    """The next part each target's check reads (1-based), and the index of the next verify."""

    check_parts: dict[str, int] = field(default_factory=dict)
    check_cycle: int | None = None  # parts per cycle when the parts were counted; a new cycle length starts over
    verify_next: int = 0

    def check_part(self, target: str, cycle: int) -> int:
        part = self.check_parts.get(target, 1) if self.check_cycle == cycle else 1
        return part if 1 <= part <= cycle else 1

    def after_check(self, target: str, cycle: int) -> Rotation:
        parts = self.check_parts if self.check_cycle == cycle else {}
        return replace(self, check_parts={**parts, target: self.check_part(target, cycle) % cycle + 1},
                       check_cycle=cycle)


def verify_turns(policy: Policy) -> list[tuple[str, str]]:
    """Each (target, database) pair in the order scheduled verifies take them: every target, database by database."""
    return [(t.name, name) for name in policy.database.names for t in policy.targets]


def path(state_dir: Path) -> Path:
    return state_dir / "rotation.json"


def read(state_dir: Path) -> Rotation:
    """The rotation so far; a missing or unreadable file starts every turn from the beginning."""
    try:
        # Never blocks on a FIFO planted there: an auditor's status may read another user's state.
        data: dict[str, Any] = json.loads(read_regular(path(state_dir)).decode("utf-8"))
        parts = {str(k): int(v) for k, v in (data.get("check_parts") or {}).items()}
        cycle = data.get("check_cycle")
        return Rotation(parts, int(cycle) if cycle is not None else None, int(data.get("verify_next", 0)))
    except (OSError, ValueError, TypeError, AttributeError):
        return Rotation()


def write(state_dir: Path, rotation: Rotation) -> None:
    replace_synced(path(state_dir), (json.dumps(asdict(rotation), indent=1, sort_keys=True) + "\n").encode())
