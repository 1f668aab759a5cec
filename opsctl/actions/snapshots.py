"""opsctl snapshots: what this policy has stored on each target."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from opsctl.actions.context import App, Session, exit_code_for
from opsctl.errors import ExitCode, OpsctlError
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
    session.read_secrets(database=False)
    rows: list[SnapshotRow] = []
    failures: list[OpsctlError] = []
    for config in session.target_configs(target_name):
        try:
            target = session.target(config)
            found = session.restic.snapshots(session.repository(target), ["opsctl", f"policy={session.policy.name}"])
        except OpsctlError as exc:  # one unreachable target must not hide what the others hold
            failures.append(exc)
            continue
        rows += [SnapshotRow(target=target.name, id=s.id, short_id=s.short_id, time=s.time, database=s.tag("db"),
                             hostname=s.hostname, paths=s.paths, opsctl_version=s.tag("opsctl-version"))
                 for s in found]
    console.show_snapshots(app, rows)
    for failure in failures:
        console.show_error(app, failure.message, failure.hint)
    reached = len(session.target_configs(target_name)) - len(failures)
    return exit_code_for(reached, len(failures))
