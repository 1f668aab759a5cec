"""The rotation journal: what a key rotation is about to do, on disk before it does it.

One JSON file in the state folder, replaced atomically and fsynced at every step, so a rotation
killed at any point can be finished (or rolled back) by the next `opsctl keys rotate`. It holds
target names, key IDs and step names; never a password.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from opsctl.durable import replace_synced, sync_folder
from opsctl.errors import OpsctlError

JOURNAL_NAME = "keys-rotation.json"


@dataclass(frozen=True)
class TargetState:
    """One target's progress; origin names the target whose key file a replica receives."""

    name: str
    display: str
    old_key: str
    origin: str | None = None
    new_key: str | None = None
    added: bool = False
    removed: bool = False
    error: str | None = None


@dataclass(frozen=True)
class Journal:
    rotation: str
    started: str
    step: str
    targets: tuple[TargetState, ...]
    switched: bool = False

    def target(self, name: str) -> TargetState:
        return next(t for t in self.targets if t.name == name)

    def with_target(self, state: TargetState) -> Journal:
        return replace(self, targets=tuple(state if t.name == state.name else t for t in self.targets))


def journal_path(state_dir: Path) -> Path:
    return state_dir / JOURNAL_NAME


def load(state_dir: Path) -> Journal | None:
    """The interrupted rotation, or None when there is none."""
    path = journal_path(state_dir)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        targets = tuple(TargetState(**t) for t in data.pop("targets"))
        return Journal(targets=targets, **data)
    except FileNotFoundError:
        return None
    except (ValueError, TypeError, KeyError) as exc:
        raise OpsctlError(f"the rotation journal {path} cannot be read ({exc.__class__.__name__})",
                          "it was left in place; compare each target with: opsctl keys status") from None


def save(state_dir: Path, journal: Journal) -> None:
    """Replace the journal atomically and durably (file and folder fsynced)."""
    path = journal_path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    data = asdict(journal)
    data["targets"] = [asdict(t) for t in journal.targets]
    replace_synced(path, (json.dumps(data, indent=1, sort_keys=True) + "\n").encode())


def record_step(state_dir: Path, journal: Journal, step: str) -> Journal:
    """Journal the step about to be done."""
    journal = replace(journal, step=step)
    save(state_dir, journal)
    return journal


def remove(state_dir: Path) -> None:
    journal_path(state_dir).unlink(missing_ok=True)
    sync_folder(state_dir)


