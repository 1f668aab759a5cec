"""Data parsed from restic's --json output."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Snapshot:
    id: str
    short_id: str
    time: datetime
    hostname: str
    username: str
    paths: tuple[str, ...]
    tags: tuple[str, ...]

    def tag_map(self) -> dict[str, str]:
        """Every key=value tag as a mapping."""
        return dict(t.split("=", 1) for t in self.tags if "=" in t)

    def tag(self, key: str) -> str | None:
        """The value of a key=value tag, e.g. tag('db') -> 'crm'."""
        prefix = f"{key}="
        return next((t[len(prefix):] for t in self.tags if t.startswith(prefix)), None)


@dataclass(frozen=True)
class BackupSummary:
    snapshot_id: str
    bytes_processed: int
    bytes_added: int
    duration_s: float


def parse_time(text: str) -> datetime:
    """restic writes nanosecond times (2026-11-22T19:39:42.491227994Z); Python takes microseconds."""
    head, _, rest = text.partition(".")
    if rest:
        digits = "".join(ch for ch in rest if ch.isdigit())
        zone = rest[len(digits):]
        text = f"{head}.{digits[:6]}{zone}"
    return datetime.fromisoformat(text)


def snapshot_from_json(item: dict[str, Any]) -> Snapshot:
    return Snapshot(
        id=item["id"],
        short_id=item.get("short_id", item["id"][:8]),
        time=parse_time(item["time"]),
        hostname=item.get("hostname", ""),
        username=item.get("username", ""),
        paths=tuple(item.get("paths") or ()),
        tags=tuple(item.get("tags") or ()),
    )


@dataclass(frozen=True)
class ForgetPlan:
    """One group of restic forget: which snapshots the keep-rules keep and which go."""

    paths: tuple[str, ...]
    keep: tuple[Snapshot, ...]
    remove: tuple[Snapshot, ...]


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    report: str


def forget_plan_from_json(group: dict[str, Any]) -> ForgetPlan:
    return ForgetPlan(
        paths=tuple(group.get("paths") or ()),
        keep=tuple(snapshot_from_json(s) for s in group.get("keep") or ()),
        remove=tuple(snapshot_from_json(s) for s in group.get("remove") or ()),
    )


@dataclass(frozen=True)
class Key:
    """One key file of a repository; current is the one whose password opened it."""

    id: str
    current: bool
    user: str
    host: str
    created: datetime


def key_file_created(content: bytes) -> datetime | None:
    """When a key file says it was made (its `created` is stored in clear); None for anything else."""
    try:
        created = json.loads(content).get("created")
        return parse_time(created) if isinstance(created, str) else None
    except (ValueError, AttributeError, RecursionError):
        return None


def key_from_json(item: dict[str, Any]) -> Key:
    # restic 0.14 prints the creation time in the local zone without saying which: read it as local.
    created = datetime.strptime(item["created"], "%Y-%m-%d %H:%M:%S").astimezone()
    return Key(id=item["id"], current=bool(item.get("current")), user=item.get("userName", ""),
               host=item.get("hostName", ""), created=created)
