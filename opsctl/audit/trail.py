"""The audit trail: one JSON line per opsctl command, whatever its outcome. Never secrets, never row data."""

from __future__ import annotations

import fcntl
import getpass
import json
import os
import socket
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from opsctl import __version__
from opsctl.policy.trust import check_state_dir

OUTCOMES = ("ok", "partial", "failed", "refused", "busy", "interrupted")


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.geteuid())


@dataclass(frozen=True)
class AuditEntry:
    """One command's line in the trail: who ran what, where, on which targets, and how it ended."""

    command: str
    policy: str | None
    policy_file: str | None
    outcome: str
    exit_code: int
    time: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    user: str = field(default_factory=_user)
    host: str = field(default_factory=socket.gethostname)
    opsctl_version: str = __version__
    targets: tuple[str, ...] = ()
    snapshot_ids: tuple[str, ...] = ()
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    duration_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "targets": list(self.targets), "snapshot_ids": list(self.snapshot_ids)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AuditEntry | None:
        """An entry read back; None when the line is not one (the trail is a file anyone with access may edit)."""
        if not isinstance(data.get("command"), str):
            return None
        details = data.get("details")
        return cls(command=data["command"], policy=_text(data.get("policy")),
                   policy_file=_text(data.get("policy_file")),
                   outcome=_text(data.get("outcome")) or "?", exit_code=_int(data.get("exit_code")),
                   time=_text(data.get("time")) or "?", user=_text(data.get("user")) or "?",
                   host=_text(data.get("host")) or "?", opsctl_version=_text(data.get("opsctl_version")) or "?",
                   targets=_texts(data.get("targets")), snapshot_ids=_texts(data.get("snapshot_ids")),
                   error=_text(data.get("error")), details=details if isinstance(details, dict) else {},
                   duration_s=float(data["duration_s"]) if isinstance(data.get("duration_s"), (int, float)) else 0.0)


def trail_path(state_dir: Path) -> Path:
    """Where a policy's audit trail is kept."""
    return state_dir / "audit.jsonl"


def append(log_path: Path, entry: AuditEntry) -> None:
    """Append one line under an exclusive lock and flush it to disk before returning."""
    line = (json.dumps(entry.to_json(), sort_keys=True, default=str) + "\n").encode()
    log_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    check_state_dir(log_path.parent)  # never write into a folder another user controls (the run says why)
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def read(log_path: Path, command: str | None = None) -> list[AuditEntry]:
    """The trail's entries, oldest first (only one command's when given); damaged lines are skipped."""
    try:
        lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return []
    entries = []
    for line in lines:
        try:
            data = json.loads(line)
        except ValueError:
            continue
        entry = AuditEntry.from_json(data) if isinstance(data, dict) else None
        if entry is not None and (command is None or entry.command == command):
            entries.append(entry)
    return entries


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _texts(value: object) -> tuple[str, ...]:
    return tuple(str(item) for item in value) if isinstance(value, list) else ()


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else -1
