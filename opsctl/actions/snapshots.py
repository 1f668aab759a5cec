"""opsctl snapshots: what this policy has stored on each target."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from opsctl.actions.context import App, Session
from opsctl.errors import ExitCode
from opsctl.reports import console


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


def snapshots(app: App, target_name: str | None = None) -> ExitCode:
    session = Session(app)
    rows: list[SnapshotRow] = []
    for config in session.target_configs(target_name):
        target = session.target(config)
        found = session.restic.snapshots(session.repository(target), ["opsctl", f"policy={session.policy.name}"])
        rows += [SnapshotRow(target=target.name, id=s.id, short_id=s.short_id, time=s.time, database=s.tag("db"),
                             hostname=s.hostname, paths=s.paths, opsctl_version=s.tag("opsctl-version"))
                 for s in found]
    console.show_snapshots(app, rows)
    return ExitCode.OK
