"""opsctl backup: dump each database ONCE into the first healthy target, then replicate to the others.

restic's work (chunking, hashing, compressing, encrypting) is CPU-bound; doing it once and copying
the resulting content-addressed files is what keeps three targets near the cost of one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from rich.markup import escape
from rich.table import Table

from opsctl import __version__
from opsctl.actions.context import App, Session, as_operator_error
from opsctl.actions.outcome import AuditFacts, Outcome, Problem, Role, TargetResult, plain
from opsctl.actions.replication import (
    Copies,
    Delivery,
    SnapshotMade,
    TargetOutcome,
    bring_up_to_date,
    delivered,
    failed,
)
from opsctl.actions.runner import Command, Secrets
from opsctl.audit import runs
from opsctl.audit.runs import Fact
from opsctl.errors import ExitCode, IntegrityError
from opsctl.manifest import HashingStream, Manifest, encode_trailer
from opsctl.policy.model import Target as TargetConfig
from opsctl.reports.console import human_bytes
from opsctl.reports.progress import Board, board
from opsctl.restic.errors import RepositoryLocked, ResticError
from opsctl.sources import Dump, Source
from opsctl.targets import Target, TargetError

log = logging.getLogger(__name__)
TARGET_FAILURES = (ResticError, TargetError)


@dataclass(frozen=True)
class DatabaseFailure:
    """A database whose dump failed: no target received it this run."""

    database: str
    error: str
    hint: str | None


@dataclass(frozen=True)
class BackedUp(Outcome):
    """Each target's part of the backup (role, snapshots, bytes added) and every database that was not backed up."""

    policy: str
    targets: tuple[TargetOutcome, ...]
    lost_databases: tuple[DatabaseFailure, ...] = ()

    @property
    def exit_code(self) -> ExitCode:
        """0: every database on every target; 1: nothing anywhere; 3: anything in between."""
        if not any(delivery(o).snapshots for o in self.targets):
            return ExitCode.FAILURE
        if self.lost_databases or not all(o.ok for o in self.targets):
            return ExitCode.PARTIAL
        return ExitCode.OK

    def target_results(self) -> tuple[TargetOutcome, ...]:
        return self.targets

    def to_json(self) -> dict[str, Any]:
        return {"policy": self.policy, "targets": [o.to_json() for o in self.targets],
                "failed_databases": plain(self.lost_databases)}

    def audit(self) -> AuditFacts:
        errors = [f.error for f in self.lost_databases]
        snapshot_ids = tuple(sorted({m.snapshot_id for o in self.targets for m in delivery(o).snapshots}))
        return AuditFacts(targets=tuple(o.location for o in self.targets), snapshot_ids=snapshot_ids,
                          error="; ".join(errors) or None,
                          details={o.target: {"bytes_added": delivery(o).bytes_added, "role": delivery(o).role.label,
                                              "error": o.error} for o in self.targets})

    def target_facts(self) -> dict[str, dict[str, Fact]]:
        """Each target's newest snapshot of each database it received, and the bytes this run added to it."""
        return {o.target: {**{runs.SNAPSHOT + m.database: m.taken_at for m in delivery(o).snapshots},
                           "bytes_added": delivery(o).bytes_added, "role": delivery(o).role.label}
                for o in self.targets if delivery(o).snapshots}

    def show(self, app: App) -> None:
        show_backup(app, self)


def delivery(outcome: TargetOutcome) -> Delivery:
    return outcome.value or Delivery(Role.NONE)


def _backup(session: Session, target_name: str | None) -> BackedUp:
    targets, outcomes = _targets(session, session.target_configs(target_name))
    with board(session.app) as shown:
        ran, lost_databases = _run(session, targets, shown)
    order = [t.name for t in session.policy.targets]
    ordered = sorted(outcomes + ran, key=lambda o: order.index(o.target))
    return BackedUp(session.policy.name, tuple(ordered), tuple(lost_databases))


def _targets(session: Session, configs: list[TargetConfig]) -> tuple[list[Target], list[TargetOutcome]]:
    """The targets to use; each is probed when first needed, so a replica's check overlaps the backup."""
    targets: list[Target] = []
    broken: list[TargetOutcome] = []
    for config in configs:
        try:
            targets.append(session.target(config))
        except Exception as exc:  # noqa: BLE001 - reported as that target's failure
            broken.append(TargetResult(config.name, config.name, Delivery(Role.NONE),
                                       Problem.of(as_operator_error(exc, config.name))))
    return targets, broken


def _run(session: Session, targets: list[Target], shown: Board) -> tuple[list[TargetOutcome], list[DatabaseFailure]]:
    """Each database goes once into the first healthy target; every other healthy target receives copies."""
    candidates = list(targets)
    sources = session.sources  # first: loading a database client is on the way to the first dump
    # The replicas' copies start with the first dump: they log in meanwhile and take each pack as it lands.
    copies = Copies(session, candidates[0], candidates[1:], shown) if len(candidates) > 1 else None
    outcomes: list[TargetOutcome] = []
    lost_databases: list[DatabaseFailure] = []
    groups: dict[str, tuple[Target, list[SnapshotMade]]] = {}
    for source in sources:
        try:
            primary, snapshot = _into_first_healthy(session, source, candidates, shown,
                                                    outcomes=outcomes, copies=copies)
        except _DumpFailed as failure:
            lost_databases.append(failure.record)
            continue
        if primary is not None and snapshot is not None:  # both, or neither when no target took it
            groups.setdefault(primary.name, (primary, []))[1].append(snapshot)
    session.app.checkpoints.reached("backed-up")
    if copies is not None and (copies.dropped or copies.primary.name not in groups):
        copies.drop(f"stopped: no backup landed in {copies.primary.name}")
        copies = None
    for name, (primary, made) in groups.items():
        outcomes.append(delivered(primary, Role.PRIMARY, tuple(made), sum(m.bytes_added for m in made),
                                  sum(m.duration_s for m in made)))
        replicas = [t for t in candidates if t.name != name]
        if copies is not None and copies.primary is primary:
            outcomes += copies.finish(made)
        elif replicas:
            outcomes += bring_up_to_date(session, primary, replicas, made, shown)
    landed = {m.database for _, made in groups.values() for m in made}
    return _merged(outcomes, landed), lost_databases


def _merged(outcomes: list[TargetOutcome], landed: set[str]) -> list[TargetOutcome]:
    """One row per target: a target is ok only when every database that was backed up landed there."""
    rows: dict[str, TargetOutcome] = {}
    for o in outcomes:
        if (seen := rows.get(o.target)) is None:
            rows[o.target] = o
            continue
        before, now = delivery(seen), delivery(o)
        both = Delivery(max(before.role, now.role), before.snapshots + now.snapshots,
                        before.bytes_added + now.bytes_added)
        rows[o.target] = replace(seen, value=both, duration_s=max(seen.duration_s, o.duration_s),
                                 problem=seen.problem or o.problem)
    for name, row in rows.items():
        missing = landed - {m.database for m in delivery(row).snapshots}
        if row.ok and missing:
            rows[name] = replace(row, problem=Problem(f"{row.location} did not receive {', '.join(sorted(missing))} "
                                                      "this run", "the next backup copies it"))
    return list(rows.values())


class _DumpFailed(Exception):
    def __init__(self, record: DatabaseFailure) -> None:
        super().__init__(record.error)
        self.record = record


def _into_first_healthy(session: Session, source: Source, candidates: list[Target], shown: Board, *,
                        outcomes: list[TargetOutcome],
                        copies: Copies | None) -> tuple[Target | None, SnapshotMade | None]:
    """Back one database up into the first candidate that takes it; failed candidates are dropped."""
    for target in list(candidates):
        started = time.monotonic()
        try:
            target.probe()
            began = copies.start if copies is not None and copies.primary is target else lambda: None
            return target, _backup_into(session, source, target, shown, began)
        except TARGET_FAILURES as exc:
            candidates.remove(target)
            outcomes.append(failed(target, Role.PRIMARY, exc, started))
            if copies is not None and copies.primary is target:
                copies.drop(f"stopped: {target.name} failed")
            log.info("%s failed; trying the next target with a new dump", target.display)
        except Exception as exc:  # noqa: BLE001 - the database failed, not the target
            error = as_operator_error(exc, f"database {source.database}")
            raise _DumpFailed(DatabaseFailure(source.database, error.message, error.hint)) from None
    return None, None


def _backup_into(session: Session, source: Source, target: Target, shown: Board,
                 began: Callable[[], None]) -> SnapshotMade:
    """Stream one dump into one target; a held lock is waited for once (a new dump follows)."""
    try:
        return _stream(session, source, target, shown, began)
    except RepositoryLocked:
        session.restic.wait_for_lock(session.repository(target))
        return _stream(session, source, target, shown, began)


def _stream(session: Session, source: Source, target: Target, shown: Board, began: Callable[[], None]) -> SnapshotMade:
    transfer = shown.transfer(f"{source.database} → {target.name}")
    taken_at = datetime.now(UTC).isoformat(timespec="seconds")  # restic stamps the snapshot a moment later
    with source.dump() as dump:
        tags = (*session.snapshot_tags(source), f"opsctl-version={__version__}",
                *(f"{key}={value}" for key, value in dump.properties.items() if "," not in value))
        stream = _DumpWithManifest(session.policy.name, dump)
        try:
            summary = session.restic.backup_stream(
                session.repository(target), transfer.track(_telling(began, stream.chunks())), filename=source.file_name,
                tags=tags,
                compression=session.policy.compression, stall_timeout_s=session.policy.stall_timeout.total_seconds())
        except BaseException:
            transfer.finish("failed")
            raise
    transfer.finish("ok")
    manifest = stream.manifest
    if manifest is None:  # restic read the stream to its end, so the trailer was written; never seen
        raise IntegrityError("the dump ended without its manifest", "run the backup again")
    return SnapshotMade(database=source.database, snapshot_id=summary.snapshot_id, manifest_sha256=manifest.sha256,
                        dump_bytes=manifest.dump_bytes, tables=len(manifest.facts.tables),
                        rows=manifest.facts.total_rows, file_name=source.file_name, tags=tags,
                        bytes_added=summary.bytes_added, duration_s=summary.duration_s,
                        warnings=manifest.facts.warnings, taken_at=taken_at)


def _telling(began: Callable[[], None], chunks: Iterator[bytes]) -> Iterator[bytes]:
    """The chunks, calling began() once the first has come: the dump tool is running by then."""
    for chunk in chunks:
        yield chunk
        began()
        break
    yield from chunks


class _DumpWithManifest:
    """The dump's bytes, then the manifest trailer once the dump tool has ended cleanly."""

    def __init__(self, policy: str, dump: Dump) -> None:
        self._policy = policy
        self._dump = dump
        self.manifest: Manifest | None = None

    def chunks(self) -> Iterator[bytes]:
        started = _now()
        hashed = HashingStream(self._dump.chunks())
        yield from hashed
        log.debug("dump ended cleanly after %d bytes; writing the manifest", hashed.size)
        if self._dump.facts is None:  # set by every dump that ends without error; never seen
            raise IntegrityError("the dump tool ended without its facts", "run the backup again")
        self.manifest = Manifest(
            policy=self._policy, opsctl_version=__version__, started_at=started, finished_at=_now(),
            dump_bytes=hashed.size, dump_sha256=hashed.sha256, facts=self._dump.facts,
        )
        yield encode_trailer(self.manifest)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def show_backup(app: App, backed_up: BackedUp) -> None:
    policy_name, outcomes = backed_up.policy, backed_up.targets
    table = Table(title=f"Backup of policy {policy_name}", title_justify="left")
    for column in ("Target", "Role", "Snapshot", "Added", "Time", "Result"):
        table.add_column(column, justify="right" if column in ("Added", "Time") else "left", no_wrap=True)
    delivered = [(o, o.value) for o in outcomes if o.value is not None]  # every row has one, failed ones too
    for o, d in delivered:
        snapshots = ", ".join(f"{m.database}:{m.snapshot_id}" for m in d.snapshots) or "-"
        table.add_row(escape(o.target), d.role.label, escape(snapshots), human_bytes(d.bytes_added),
                      f"{o.duration_s:.1f}s", "ok" if o.ok else "[red]FAILED[/]")
    app.out.print(table)
    if any(d.role.label == "replica" for _, d in delivered):
        app.out.print("Added: new data before compression on the primary; bytes copied (compressed) to replicas.")
    dumps = {m.database: m for _, d in delivered for m in d.snapshots}
    for m in dumps.values():
        holders = [o.target for o, d in delivered if any(s.database == m.database for s in d.snapshots)]
        app.out.print(f"{escape(m.database)}: one dump of {human_bytes(m.dump_bytes)} ({m.tables} tables, "
                      f"{m.rows:,} rows), manifest SHA-256 {m.manifest_sha256[:16]}…, "
                      f"now on {escape(', '.join(holders))}")
        for warning in m.warnings:
            app.out.print(f"  [yellow]warning:[/] {escape(warning)}")
    _show_backup_failures(app, backed_up)
    _show_backup_ending(app, backed_up, any(d.snapshots for _, d in delivered))


def _show_backup_failures(app: App, backed_up: BackedUp) -> None:
    for o in backed_up.targets:
        if not o.ok:
            error = o.error or ""
            where = "" if o.location in error else f"{o.location}: "
            app.out.print(f"[red]FAILED[/] {escape(where + error)}")
            if o.hint:
                app.out.print(f"  what to do: {escape(o.hint)}")
    for f in backed_up.lost_databases:
        app.out.print(f"[red]FAILED[/] database {escape(f.database)} was not backed up: {escape(f.error)}")
        if f.hint:
            app.out.print(f"  what to do: {escape(f.hint)}")


def _show_backup_ending(app: App, backed_up: BackedUp, anything_new: bool) -> None:
    outcomes, lost_databases = backed_up.targets, backed_up.lost_databases
    failed = sum(not o.ok for o in outcomes)
    if not anything_new:
        app.out.print("No target holds a new backup. No partial snapshot was kept.")
    elif failed == 0 and lost_databases:
        app.out.print("Every target holds the databases that were backed up.")
    elif failed == 0:
        app.out.print("The target holds this backup." if len(outcomes) == 1
                      else f"All {len(outcomes)} targets hold this backup.")
    else:
        app.out.print(f"{failed} of {len(outcomes)} targets failed; the others hold this backup. "
                      "No partial snapshot was kept.")


BACKUP = Command("backup", _backup, lock=True, restic=True, secrets=Secrets.ALL)
