"""The audit trail: one JSON line per command that touches backups. Never secrets, never row data."""

from __future__ import annotations

import fcntl
import getpass
import json
import os
import socket
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from opsctl import __version__


@dataclass
class AuditRecord:
    """Filled in by an action while it runs, written once when it ends."""

    command: str
    policy: str
    policy_file: str
    targets: list[str] = field(default_factory=list)
    snapshot_ids: list[str] = field(default_factory=list)
    outcome: str = "ok"
    error: str | None = None
    details: dict = field(default_factory=dict)


def append(log_path: Path, record: AuditRecord, duration_s: float) -> None:
    """Append one line under an exclusive lock and flush it to disk before returning."""
    entry = {
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "user": _user(),
        "host": socket.gethostname(),
        "opsctl_version": __version__,
        **asdict(record),
        "duration_s": round(duration_s, 3),
    }
    line = (json.dumps(entry, sort_keys=True, default=str) + "\n").encode()
    log_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def read(log_path: Path, command: str | None = None) -> list[dict]:
    """The trail's entries, oldest first (only one command's when given); damaged lines are skipped."""
    try:
        lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return []
    entries = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and (command is None or entry.get("command") == command):
            entries.append(entry)
    return entries


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.geteuid())
