"""opsctl restore: bring a snapshot back into a new database, proven against its manifest."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

from opsctl.actions.context import App, Session
from opsctl.errors import BadInput, ExitCode, IntegrityError, OpsctlError
from opsctl.manifest import Manifest, TableStats, TrailerSplitter
from opsctl.reports import console
from opsctl.reports.progress import byte_progress
from opsctl.restic.errors import SnapshotNotFound
from opsctl.restic import Repository
from opsctl.restic.models import Snapshot
from opsctl.sources import Destination, Source


@dataclass(frozen=True)
class RestoreRequest:
    snapshot: str
    to: str
    target: str | None = None
    database: str | None = None
    replace: bool = False
    confirm_source: str | None = None


@dataclass(frozen=True)
class RestoreResult:
    database: str
    target: str
    snapshot_id: str
    snapshot_time: datetime
    destination: str
    dump_bytes: int
    dump_sha256: str
    tables: int
    rows: int
    duration_s: float
    moved_aside: str | None


def restore(app: App, request: RestoreRequest) -> ExitCode:
    session = Session(app)
    with session.audited("restore") as record:
        _ = session.restic.version
        source = session.source(request.database)
        target = first_reachable_target(session, request.target)
        record.targets = [target.display]
        destination = source.destination(request.to)
        refuse_unsafe(destination, source, request)
        repo = session.repository(target)
        snapshot = pick_snapshot(session.restic.snapshots(repo, session.snapshot_tags(source)), request.snapshot)
        record.snapshot_ids = [snapshot.short_id]
        started = time.monotonic()
        staging = source.create_staging(destination, snapshot.tag_map())
        try:
            manifest = load_snapshot(session, source, repo, snapshot, staging)
            check_row_counts(manifest, source.table_stats(staging))
            refuse_if_changed(destination, source.destination(request.to))
            aside = source.publish(staging, destination)
        except BaseException:
            source.discard(staging)
            raise
        record.details = {"destination": destination.display, "moved_aside": aside}
    result = RestoreResult(
        database=source.database, target=target.display, snapshot_id=snapshot.short_id, snapshot_time=snapshot.time,
        destination=destination.display, dump_bytes=manifest.dump_bytes, dump_sha256=manifest.dump_sha256,
        tables=len(manifest.facts.tables), rows=manifest.facts.total_rows,
        duration_s=time.monotonic() - started, moved_aside=aside)
    console.show_restore(app, result)
    return ExitCode.OK


def load_snapshot(session: Session, source: Source, repo: Repository, snapshot: Snapshot, staging: str,
                  verb: str = "restoring") -> Manifest:
    """Stream the snapshot's dump into staging, checked against its manifest on the way; return the manifest."""
    with session.restic.dump(repo, snapshot.id, "/" + source.file_name) as chunks, \
            byte_progress(session.app, f"{verb} {source.database}") as tracked:
        stream = TrailerSplitter(tracked(chunks))
        source.load(staging, stream)
    if stream.manifest is None:  # the loader stopped reading before the end: nothing was proven
        raise IntegrityError("the restore stopped before the whole dump was read and checked",
                             "nothing was put in place; run the restore again")
    return stream.manifest


def first_reachable_target(session: Session, name: str | None):
    """The named target, or the first one in the policy that answers (the others may be down)."""
    if name is not None:
        return session.target(session.target_configs(name)[0])
    problems = []
    for config in session.policy.targets:
        target = session.target(config)
        try:
            target.probe()
            return target
        except OpsctlError as exc:
            problems.append(exc.message)
    raise OpsctlError("no target of the policy can be reached: " + "; ".join(problems),
                      "bring one back (or fix its mount, network or credentials), then run the command again")


def refuse_unsafe(destination: Destination, source: Source, request: RestoreRequest) -> None:
    """Never overwrite data without being told to, and the source only when told by name."""
    if destination.is_source and not (request.replace and request.confirm_source == source.database):
        raise BadInput(
            f"{destination.display} is the database this policy backs up; refusing to restore over it",
            "restore into a new name with --to; if you really mean to replace the live database, stop the "
            f"application and pass --replace --confirm-source {source.database}",
        )
    if destination.exists and not destination.empty and not request.replace:
        raise BadInput(
            f"{destination.display} already exists and is not empty",
            "choose a new name with --to, or pass --replace (the current one is kept, renamed aside)",
        )


def refuse_if_changed(before: Destination, now: Destination) -> None:
    """The restore may take hours: what was checked at the start must still hold before publishing."""
    if (now.exists, now.empty) != (before.exists, before.empty):
        raise BadInput(f"{before.display} changed while the restore ran; nothing was replaced",
                       "look at it, then run the restore again")


def pick_snapshot(snapshots: list[Snapshot], wanted: str) -> Snapshot:
    """'latest' or an id or id prefix among this policy's snapshots of this database."""
    if not snapshots:
        raise OpsctlError("there are no snapshots of this database on that target yet", "run: opsctl backup")
    if wanted == "latest":
        return snapshots[-1]
    matches = [s for s in snapshots if s.id.startswith(wanted.lower())]
    if len(matches) != 1:
        what = "matches several snapshots; give more characters" if matches else "is not a snapshot of this database"
        raise SnapshotNotFound(f"snapshot '{wanted}' {what}", "list them with: opsctl snapshots")
    return matches[0]


def check_row_counts(manifest: Manifest, restored: tuple[TableStats, ...]) -> None:
    """Every table the manifest lists is back with exactly its row count (if counted), and no table is extra."""
    expected = {t.name: t.rows for t in manifest.facts.tables}
    actual = {t.name: t.rows for t in restored}
    problems = [f"table {name}: expected {rows} rows, found {actual.get(name, 'no table')}"
                for name, rows in expected.items() if name not in actual or rows not in (None, actual[name])]
    problems += [f"table {name}: not in the backup" for name in actual.keys() - expected.keys()]
    if problems:
        raise IntegrityError("the restored database does not match the backup: " + "; ".join(problems[:10]),
                             "nothing was put in place; restore an earlier snapshot and check this target with restic check")

