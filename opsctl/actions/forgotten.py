"""Snapshots a target forgot by its own retention, so replication does not bring them back."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable


def _ledger(state_dir: Path, target: str) -> Path:
    return state_dir / "forgotten" / f"{target}.txt"


def forgotten(state_dir: Path, target: str) -> set[str]:
    """Full snapshot IDs that prune removed from this target."""
    path = _ledger(state_dir, target)
    return set(path.read_text().split()) if path.exists() else set()


def remember_forgotten(state_dir: Path, target: str, snapshot_ids: Iterable[str]) -> None:
    ids = sorted(set(snapshot_ids))
    if not ids:
        return
    path = _ledger(state_dir, target)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with path.open("a") as handle:
        handle.write("".join(f"{i}\n" for i in ids))
