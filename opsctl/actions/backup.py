"""opsctl backup: dump each database ONCE into the first healthy target, then replicate to the others.

restic's work (chunking, hashing, compressing, encrypting) is CPU-bound; doing it once and copying
the resulting content-addressed files is what keeps three targets near the cost of one.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Iterator

from opsctl import __version__
from opsctl.actions.context import App, Session, as_operator_error, outcome_for
from opsctl.actions.replication import SnapshotMade, TargetOutcome, bring_up_to_date, failed
from opsctl.errors import ExitCode
from opsctl.manifest import HashingStream, Manifest, encode_trailer
from opsctl.reports import console
from opsctl.reports.progress import Board, board
from opsctl.restic.errors import RepositoryLocked, ResticError
from opsctl.sources import Dump, Source
from opsctl.targets import Target, TargetError

log = logging.getLogger(__name__)
TARGET_FAILURES = (ResticError, TargetError)
_ROLE_RANK = {"-": 0, "replica": 1, "separate": 1, "primary": 2}


def backup(app: App, target_name: str | None = None) -> ExitCode:
    session = Session(app)
    with session.exclusive("backup"), session.audited("backup") as record:
        _ = session.restic.version
        session.read_secrets()
        targets, outcomes = _targets(session, session.target_configs(target_name))
        with board(app) as shown:
            ran, lost_databases = _run(session, targets, shown)
        outcomes = sorted(outcomes + ran, key=lambda o: [t.name for t in session.policy.targets].index(o.target))
        record.targets = [o.location for o in outcomes]
        record.snapshot_ids = sorted({m.snapshot_id for o in outcomes for m in o.snapshots})
        code = _exit_code(outcomes, lost_databases)
        record.outcome = outcome_for(code)
        record.error = "; ".join(f.error for f in lost_databases) or None
        record.details = {o.target: {"bytes_added": o.bytes_added, "role": o.role, "error": o.error}
                          for o in outcomes}
    console.show_backup(app, session.policy.name, outcomes, lost_databases)
    return code


def _exit_code(outcomes: list[TargetOutcome], lost_databases: list[DatabaseFailure]) -> ExitCode:
    """0: every database on every target; 1: nothing anywhere; 3: anything in between."""
    if not any(o.snapshots for o in outcomes):
        return ExitCode.FAILURE
    if lost_databases or not all(o.ok for o in outcomes):
        return ExitCode.PARTIAL
    return ExitCode.OK


def _targets(session: Session, configs: list) -> tuple[list[Target], list[TargetOutcome]]:
    """The targets to use; each is probed when first needed, so a replica's check overlaps the backup."""
    targets, broken = [], []
    for config in configs:
        try:
            targets.append(session.target(config))
        except Exception as exc:  # noqa: BLE001 - reported as that target's failure
            broken.append(TargetOutcome(config.name, config.name, "-", error=str(exc)))
    return targets, broken


@dataclass(frozen=True)
class DatabaseFailure:
    """A database whose dump failed: no target received it this run."""

    database: str
    error: str
    hint: str | None


def _run(session: Session, targets: list[Target], shown: Board) -> tuple[list[TargetOutcome], list[DatabaseFailure]]:
    """Each database goes once into the first healthy target; every other healthy target receives copies."""
    candidates = list(targets)
    _warm_up(candidates[1:])
    outcomes: list[TargetOutcome] = []
    lost_databases: list[DatabaseFailure] = []
    groups: dict[str, tuple[Target, list[SnapshotMade]]] = {}
    for source in session.sources:
        try:
            primary, made = _into_first_healthy(session, source, candidates, shown, outcomes)
        except _DumpFailed as failure:
            lost_databases.append(failure.record)
            continue
        if primary is not None:
            groups.setdefault(primary.name, (primary, []))[1].append(made)
    for name, (primary, made) in groups.items():
        outcomes.append(TargetOutcome(primary.name, primary.display, "primary", tuple(made),
                                      sum(m.bytes_added for m in made), sum(m.duration_s for m in made)))
        replicas = [t for t in candidates if t.name != name]
        if replicas:
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
        rows[o.target] = replace(
            seen, role=max(seen.role, o.role, key=_ROLE_RANK.get), snapshots=seen.snapshots + o.snapshots, bytes_added=seen.bytes_added + o.bytes_added,
            duration_s=max(seen.duration_s, o.duration_s), error=seen.error or o.error, hint=seen.hint or o.hint)
    for name, row in rows.items():
        missing = landed - {m.database for m in row.snapshots}
        if row.ok and missing:
            rows[name] = replace(row, error=f"{row.location} did not receive {', '.join(sorted(missing))} this run",
                                 hint="the next backup copies it")
    return list(rows.values())


def _warm_up(targets: list[Target]) -> None:
    """While the dump runs, load the replicas' client libraries and reach them once (S3 keeps its client)."""
    def probe(target: Target) -> None:
        try:
            target.probe()
        except Exception:  # noqa: BLE001 - the copy reports it properly later
            log.debug("warm-up of %s failed", target.display, exc_info=True)

    for target in targets:
        threading.Thread(target=probe, args=(target,), name=f"warm-up-{target.name}", daemon=True).start()


class _DumpFailed(Exception):
    def __init__(self, record: DatabaseFailure) -> None:
        super().__init__(record.error)
        self.record = record


def _into_first_healthy(session: Session, source: Source, candidates: list[Target], shown: Board,
                        outcomes: list[TargetOutcome]) -> tuple[Target | None, SnapshotMade | None]:
    """Back one database up into the first candidate that takes it; failed candidates are dropped."""
    for target in list(candidates):
        started = time.monotonic()
        try:
            target.probe()
            return target, _backup_into(session, source, target, shown)
        except TARGET_FAILURES as exc:
            candidates.remove(target)
            outcomes.append(failed(target, "primary", exc, started))
            log.info("%s failed; trying the next target with a new dump", target.display)
        except Exception as exc:  # noqa: BLE001 - the database failed, not the target
            error = as_operator_error(exc, f"database {source.database}")
            raise _DumpFailed(DatabaseFailure(source.database, error.message, error.hint)) from None
    return None, None


def _backup_into(session: Session, source: Source, target: Target, shown: Board) -> SnapshotMade:
    """Stream one dump into one target; a held lock is waited for once (a new dump follows)."""
    try:
        return _stream(session, source, target, shown)
    except RepositoryLocked:
        session.restic.wait_for_lock(session.repository(target))
        return _stream(session, source, target, shown)


def _stream(session: Session, source: Source, target: Target, shown: Board) -> SnapshotMade:
    transfer = shown.transfer(f"{source.database} → {target.name}")
    with source.dump() as dump:
        tags = (*session.snapshot_tags(source), f"opsctl-version={__version__}",
                *(f"{key}={value}" for key, value in dump.properties.items() if "," not in value))
        stream = _DumpWithManifest(session.policy.name, dump)
        try:
            summary = session.restic.backup_stream(
                session.repository(target), transfer.track(stream.chunks()), filename=source.file_name, tags=tags,
                compression=session.policy.compression, stall_timeout_s=session.policy.stall_timeout.total_seconds())
        except BaseException:
            transfer.finish("failed")
            raise
    transfer.finish("ok")
    manifest = stream.manifest
    return SnapshotMade(database=source.database, snapshot_id=summary.snapshot_id, manifest_sha256=manifest.sha256,
                        dump_bytes=manifest.dump_bytes, tables=len(manifest.facts.tables),
                        rows=manifest.facts.total_rows, file_name=source.file_name, tags=tags,
                        bytes_added=summary.bytes_added, duration_s=summary.duration_s,
                        warnings=manifest.facts.warnings)


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
        self.manifest = Manifest(
            policy=self._policy, opsctl_version=__version__, started_at=started, finished_at=_now(),
            dump_bytes=hashed.size, dump_sha256=hashed.sha256, facts=self._dump.facts,
        )
        yield encode_trailer(self.manifest)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")
