"""What restore, verify and drill share: finding a snapshot, streaming it into a database, proving it."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from opsctl.actions.context import Session
from opsctl.actions.fingerprint_check import Comparison, compare
from opsctl.errors import IntegrityError, OpsctlError
from opsctl.leftovers import scratch_folder
from opsctl.manifest import Manifest, TableStats, TrailerSplitter
from opsctl.reports.console import human_bytes
from opsctl.reports.progress import byte_progress
from opsctl.restic import Repository
from opsctl.restic.errors import SnapshotNotFound
from opsctl.restic.models import Snapshot
from opsctl.sources import Source
from opsctl.sources.errors import DestinationRefused

PHASES = ("locate", "fetch", "restore", "verify")


@dataclass
class PhaseClock:
    """Wall time per recovery phase: locate, fetch (waiting on the target), restore (waiting on the database),
    verify."""

    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.seconds[name] += time.monotonic() - started

    def recovery_s(self) -> float:
        """Seconds spent moving and proving data: what scales with the dump's size (restore estimates use it)."""
        return round(self.seconds["fetch"] + self.seconds["restore"] + self.seconds["verify"], 3)

    def rows(self, total: float | None = None) -> list[dict[str, Any]]:
        """Each phase's seconds and its share of `total` (default: of all phases)."""
        total = total or sum(self.seconds.values()) or 1.0
        return [{"name": name, "seconds": round(s, 3), "share": round(s / total, 3)}
                for name, s in self.seconds.items()]


class _WaitTimer:
    """Counts the time spent waiting for the next chunk: in a streamed restore, that is time the target kept us."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self.waited = 0.0

    def __iter__(self) -> Iterator[bytes]:
        while True:
            started = time.monotonic()
            try:
                chunk = next(self._chunks)
            except StopIteration:
                return
            finally:
                self.waited += time.monotonic() - started
            yield chunk


def fetch(session: Session, source: Source, repo: Repository,
          snapshot: Snapshot) -> AbstractContextManager[Iterator[bytes]]:
    """`restic dump` of the snapshot's file, started now: restic opens the repository and reads its index
    while the caller makes the staging database."""
    return session.restic.dump(repo, snapshot.id, "/" + source.file_name)


# A restored database takes more room than its dump: indexes are rebuilt from their definitions. A quarter more is
# a floor, not a promise; the check refuses only what cannot fit, so a tight restore may still run out later.
ROOM_FACTOR = 1.25


def check_room(session: Session, source: Source, repo: Repository, snapshot: Snapshot,
               size_bytes: int | None = None) -> None:
    """Refuse before copying anything when this server cannot take the snapshot: an older engine than the one it
    was taken from, or (where the server's free space can be known) too little room."""
    source.check_restorable(snapshot.tag_map())
    free = source.free_bytes()
    if free is None:
        return
    if size_bytes is None:
        size_bytes = session.restic.file_size(repo, snapshot.id, "/" + source.file_name)
    if size_bytes is not None and free < size_bytes * ROOM_FACTOR:
        raise DestinationRefused(
            f"{source.where} has {human_bytes(free)} free, and the snapshot's dump alone is "
            f"{human_bytes(size_bytes)}: a restore needs about {human_bytes(int(size_bytes * ROOM_FACTOR))}",
            "free space there first (nothing was copied), or restore to another server with --server/--host")


def load_snapshot(
        session: Session, source: Source, chunks: Iterator[bytes], staging: str, *,
        verb: str = "restoring", clock: PhaseClock | None = None, total: int | None = None) -> Manifest:
    """Stream a fetched dump into staging, checked against its manifest on the way; return the manifest.

    The dump streams from restic straight into the database's loader, so fetching and restoring
    overlap; the clock splits their time by which side the stream was waiting on.
    """
    started = time.monotonic()
    with byte_progress(session.app, f"{verb} {source.database}", total) as tracked:
        timer = _WaitTimer(chunks)
        stream = TrailerSplitter(tracked(timer))
        try:
            source.load(staging, stream)
        finally:
            if clock is not None:
                clock.seconds["fetch"] += timer.waited
                clock.seconds["restore"] += time.monotonic() - started - timer.waited
    if stream.manifest is None:  # the loader stopped reading before the end: nothing was proven
        raise IntegrityError("the restore stopped before the whole dump was read and checked",
                             "nothing was put in place; run the restore again")
    return stream.manifest


def prove(session: Session, source: Source, staging: str, manifest: Manifest, snapshot: Snapshot) -> Comparison:
    """Fingerprint the restored database as at backup time and compare it with the manifest, table by table."""
    if not manifest.facts.fingerprint_salt:
        raise OpsctlError(f"snapshot {snapshot.short_id} was made before opsctl recorded fingerprints, so its "
                          "contents cannot be proven (its dump and row counts restored fine)",
                          "run opsctl backup, then verify the new snapshot")
    session.app.checkpoints.restored(source, staging)
    return compare(manifest.facts.census, source.census(staging, manifest.facts))


def check_row_counts(manifest: Manifest, restored: tuple[TableStats, ...]) -> None:
    """Every table the manifest lists is back with exactly its row count (if counted), and no table is extra."""
    expected = {t.name: t.rows for t in manifest.facts.tables}
    actual = {t.name: t.rows for t in restored}
    problems = [f"table {name}: expected {rows} rows, found {actual.get(name, 'no table')}"
                for name, rows in expected.items() if name not in actual or rows not in (None, actual[name])]
    problems += [f"table {name}: not in the backup" for name in actual.keys() - expected.keys()]
    if problems:
        raise IntegrityError("the restored database does not match the backup: " + "; ".join(problems[:10]),
                             "nothing was put in place; restore an earlier snapshot and check this target "
                             "with restic check")


def pick_snapshot(snapshots: list[Snapshot], wanted: str, at: datetime | None = None) -> Snapshot:
    """'latest' (or the newest at or before `at`), or an id or id prefix, among this policy's snapshots."""
    if not snapshots:
        raise SnapshotNotFound("there are no snapshots of this database on that target yet", "run: opsctl backup")
    if at is not None:
        before = [s for s in snapshots if s.time <= at]
        if not before:
            raise SnapshotNotFound(f"no snapshot was taken at or before {at:%Y-%m-%d %H:%M:%S %Z}; the oldest is "
                                   f"from {snapshots[0].time:%Y-%m-%d %H:%M:%S %Z}",
                                   "give a later --at, or list them with: opsctl snapshots")
        return max(before, key=lambda s: s.time)
    if wanted == "latest":
        return max(snapshots, key=lambda s: s.time)
    matches = [s for s in snapshots if s.id.startswith(wanted.lower())]
    if len(matches) != 1:
        what = "matches several snapshots; give more characters" if matches else "is not a snapshot of this database"
        raise SnapshotNotFound(f"snapshot '{wanted}' {what}", "list them with: opsctl snapshots")
    return matches[0]


@contextmanager
def scratch(session: Session, source: Source, snapshot: Snapshot, purpose: str) -> Iterator[str]:
    """A scratch database (SQLite: a private file) that is always removed, on failure, Ctrl-C and SIGTERM too."""
    name = f"opsctl_{purpose}_{source.database[:20]}_{secrets.token_hex(3)}"
    with ExitStack() as stack:
        if source.engine == "sqlite":
            name = str(stack.enter_context(scratch_folder(purpose, session.state_dir / "tmp")) / f"{name}.sqlite3")
        staging = source.create_staging(source.destination(name), snapshot.tag_map())
        try:
            yield staging
        finally:
            source.discard(staging)
