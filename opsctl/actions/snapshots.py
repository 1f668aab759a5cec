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
    listed = session.on_each_target(target_name, lambda config: _list(session, config))
    rows = [row for found in listed if not isinstance(found, OpsctlError) for row in found]
    failures = [found for found in listed if isinstance(found, OpsctlError)]
    console.show_snapshots(app, rows)
    for failure in failures:
        console.show_error(app, failure.message, failure.hint)
    return exit_code_for(len(listed) - len(failures), len(failures))


def _list(session: Session, config) -> list[SnapshotRow] | OpsctlError:
    """One target's snapshots of this policy, or why they could not be listed (the others still show)."""
    try:
        target = session.target(config)
        found = session.restic.snapshots(session.repository(target), ["opsctl", f"policy={session.policy.name}"])
    except OpsctlError as exc:
        return exc
    return [SnapshotRow(target=target.name, id=s.id, short_id=s.short_id, time=s.time, database=s.tag("db"),
                        hostname=s.hostname, paths=s.paths, opsctl_version=s.tag("opsctl-version")) for s in found]
