"""opsctl snapshots: what this policy has stored on each target."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rich.markup import escape
from rich.table import Table

from opsctl.actions.context import App, Session
from opsctl.actions.outcome import PerTarget, Problem, TargetResult, plain
from opsctl.actions.runner import Command, Secrets
from opsctl.errors import OpsctlError
from opsctl.policy.model import Target as TargetConfig
from opsctl.reports import console
from opsctl.reports.console import human_age


@dataclass(frozen=True)
class SnapshotRow:
    target: str
    id: str
    short_id: str
    time: datetime
    database: str | None
    hostname: str
    paths: tuple[str, ...]
    opsctl_version: str | None


@dataclass(frozen=True)
class SnapshotsListed(PerTarget[tuple[SnapshotRow, ...]]):
    """Each target's snapshots of this policy, or why that target could not be listed."""

    @property
    def rows(self) -> list[SnapshotRow]:
        return [row for result in self.targets for row in result.value or ()]

    def to_json(self) -> dict[str, Any]:
        return {"snapshots": plain(self.rows),
                "targets": [{**r.summary(), "snapshots": len(r.value or ())} for r in self.targets]}

    def show(self, app: App) -> None:
        show_snapshots(app, self)


def _snapshots(session: Session, target_name: str | None) -> SnapshotsListed:
    return SnapshotsListed(tuple(session.on_each_target(target_name, lambda config: _list(session, config))))


def _list(session: Session, config: TargetConfig) -> TargetResult[tuple[SnapshotRow, ...]]:
    """One target's snapshots of this policy, or why they could not be listed (the others still show)."""
    started, location = time.monotonic(), config.name
    try:
        target = session.target(config)
        location = target.display
        found = session.restic.snapshots(session.repository(target), ["opsctl", f"policy={session.policy.name}"])
    except OpsctlError as exc:
        return TargetResult(config.name, location, problem=Problem.of(exc), duration_s=time.monotonic() - started)
    rows = tuple(SnapshotRow(target=target.name, id=s.id, short_id=s.short_id, time=s.time, database=s.tag("db"),
                             hostname=s.hostname, paths=s.paths, opsctl_version=s.tag("opsctl-version"))
                 for s in found)
    return TargetResult(config.name, location, rows, duration_s=time.monotonic() - started)


def show_snapshots(app: App, listed: SnapshotsListed) -> None:
    rows = listed.rows
    table = Table(title="Snapshots", title_justify="left")
    for column in ("Target", "ID", "Time (UTC)", "Age", "Database", "Host", "opsctl"):
        table.add_column(column)
    for row in rows:
        table.add_row(escape(row.target), row.short_id, row.time.strftime("%Y-%m-%d %H:%M:%S"),
                      human_age(row.time), escape(row.database or "?"), escape(row.hostname),
                      escape(row.opsctl_version or "?"))
    app.out.print(table)
    failed = [r for r in listed.targets if not r.ok]
    if not rows and not failed:
        app.out.print("No snapshots yet. Run: opsctl backup")
    for r in failed:
        console.verdict_line(app, False, r.location, r.error, r.hint)


SNAPSHOTS = Command("snapshots", _snapshots, restic=True, secrets=Secrets.REPOSITORY)
