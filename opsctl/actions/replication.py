"""Bring every other target up to date with the primary, in parallel, cutting off a target that stalls.

Shared by backup (after the one dump landed in the primary) and init (seeding a new replica).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import cast

from opsctl.actions.context import Session
from opsctl.actions.outcome import Problem, Role, TargetResult
from opsctl.errors import OpsctlError, described
from opsctl.reports.progress import Board, Transfer
from opsctl.sources.errors import traceback_safe
from opsctl.targets import NotAReplica, RepositoryFiles, Target
from opsctl.targets.replicate import Cancelled, Copier, check_identity, restic_files

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SnapshotMade:
    """One database's snapshot made by this run, as the manifest describes it."""

    database: str
    snapshot_id: str
    manifest_sha256: str
    dump_bytes: int
    tables: int
    rows: int
    file_name: str
    tags: tuple[str, ...]
    bytes_added: int = 0
    duration_s: float = 0.0
    warnings: tuple[str, ...] = ()
    taken_at: str = ""  # when the dump began: the snapshot's time, to the second


@dataclass(frozen=True)
class Delivery:
    """What one target received in a backup, and in which role (kept on failure too)."""

    role: Role
    snapshots: tuple[SnapshotMade, ...] = ()
    bytes_added: int = 0


TargetOutcome = TargetResult[Delivery]


def delivered(target: Target, role: Role, snapshots: tuple[SnapshotMade, ...], bytes_added: int,
              duration_s: float) -> TargetOutcome:
    return TargetResult(target.name, target.display, Delivery(role, snapshots, bytes_added), duration_s=duration_s)


def failed(target: Target, role: Role, exc: BaseException, started: float) -> TargetOutcome:
    """A failure as an outcome row; a library's own error is named by its class (no data in messages)."""
    return TargetResult(target.name, target.display, Delivery(role), Problem.of(_explain(target, exc)),
                        time.monotonic() - started)


def _explain(target: Target, exc: BaseException) -> OpsctlError:
    if isinstance(exc, OpsctlError):
        return exc
    log.debug("failure on %s", target.display, exc_info=traceback_safe(exc))
    code = getattr(exc, "response", {}).get("Error", {}).get("Code") if hasattr(exc, "response") else None
    if code:  # S3 answered, and refused
        return OpsctlError(f"{target.display} refused the copy ({code})",
                           "check the key's rights on the bucket (list, get and put objects)")
    if _is_connection_loss(exc):
        return OpsctlError(f"the connection to {target.display} was lost during the copy ({exc.__class__.__name__})",
                           "check that the target is up; the next backup copies what is missing")
    return OpsctlError(f"copy to {target.display} failed ({described(exc)})",
                       "the next backup copies what is missing; run with --verbose for details")


def _is_connection_loss(exc: BaseException) -> bool:
    if isinstance(exc, (EOFError, ConnectionError, TimeoutError)):
        return True
    if isinstance(exc, OSError) and exc.errno is None and "socket" in str(exc).lower():
        return True  # paramiko's "Socket is closed"
    module = type(exc).__module__.split(".")[0]
    return module in ("paramiko", "botocore", "urllib3", "socket")


def bring_up_to_date(session: Session, primary: Target, replicas: list[Target], made: list[SnapshotMade],
                     shown: Board) -> list[TargetOutcome]:
    """Replicate the primary to every replica at once; each gets its own thread and stall watch."""
    return Copies(session, primary, replicas, shown, follow=False).finish(made)


class Copies:
    """The copies of one primary to its replicas, started with its backup so that packs follow it closely.

    Each replica's job connects at once (so a slow login overlaps the dump), copies every pack the
    primary completes while the backup runs, and once the backup has ended copies the rest in order.
    """

    def __init__(self, session: Session, primary: Target, replicas: list[Target], shown: Board, *,
                 follow: bool = True) -> None:
        self.primary = primary
        self.dropped = False
        self.stall_s = session.policy.stall_timeout.total_seconds()
        self._session, self._replicas, self._shown, self._follow = session, replicas, shown, follow
        self._changed = threading.Event()
        self._jobs: list[_Job] = []

    def start(self) -> None:
        """Start every job (once): when the dump has begun, so their logins do not delay it."""
        if self._jobs or self.dropped:
            return
        self._jobs = [_Job(self._session, self.primary, replica, self._shown.transfer(f"copy → {replica.name}"),
                           self._changed, follow=self._follow) for replica in self._replicas]
        for job in self._jobs:
            job.thread.start()

    def finish(self, made: list[SnapshotMade]) -> list[TargetOutcome]:
        """Tell every job the backup has ended with `made`; wait until each is done or stalled."""
        self.start()
        for job in self._jobs:
            job.backup_done(made)
        while pending := self._pending():
            now = time.monotonic()
            for job in pending:
                if now - job.last_progress > self.stall_s:
                    job.abandon()
            deadline = min(job.last_progress for job in pending) + self.stall_s
            self._changed.wait(timeout=max(0.0, deadline - now))  # a job's end or the next stall, whichever first
        # Every job has ended (each sets its outcome) or was abandoned (which sets a stalled one).
        return [cast("TargetOutcome", job.outcome) for job in self._jobs]

    def drop(self, why: str) -> None:
        """Stop every job where it is (the primary failed, or no database landed): no outcome is wanted."""
        if not self.dropped:
            self.dropped = True
            for job in self._jobs:
                job.drop(why)

    def _pending(self) -> list[_Job]:
        self._changed.clear()  # before looking: a job that ends after the look sets it again
        return [job for job in self._jobs if not job.finished.is_set() and not job.abandoned]


class _Job:
    """One replica's copy, run in a daemon thread so a hung disk or socket cannot hold the run."""

    def __init__(self, session: Session, primary: Target, replica: Target, transfer: Transfer,
                 changed: threading.Event, *, follow: bool) -> None:
        self.session, self.primary, self.replica = session, primary, replica
        self.transfer = transfer
        self.made: list[SnapshotMade] = []
        self.follow = follow
        self.stall_s = session.policy.stall_timeout.total_seconds()
        self.cancelled = threading.Event()
        self.backup_ended = threading.Event()
        self.finished = threading.Event()
        self._changed = changed
        self.abandoned = False
        self.started = self.last_progress = time.monotonic()
        self.outcome: TargetOutcome | None = None
        self.thread = threading.Thread(target=self._run, name=f"replicate-{replica.name}", daemon=True)

    def backup_done(self, made: list[SnapshotMade]) -> None:
        self.made = made
        # Waiting for the backup was no stall: the watch starts now, however long the dump took.
        self.last_progress = max(self.last_progress, time.monotonic())
        self.backup_ended.set()

    def drop(self, why: str) -> None:
        self.cancelled.set()
        self.backup_ended.set()
        self.transfer.finish(why)

    def abandon(self) -> None:
        self.cancelled.set()
        self.abandoned = True
        self.outcome = self._stalled()
        self.transfer.finish("stalled")

    def _stalled(self) -> TargetOutcome:
        return TargetResult(
            self.replica.name, self.replica.display, Delivery(Role.REPLICA), duration_s=time.monotonic() - self.started,
            problem=Problem(f"{self.replica.display} made no progress for {self.stall_s:.0f} s and was cut off",
                            "check that target's network and storage; the next backup completes the copy"))

    def progress(self, count: int) -> None:
        self.last_progress = time.monotonic()
        self.transfer.advance(count)

    def _run(self) -> None:
        try:
            outcome = self._outcome()
            if outcome is not None and not self.abandoned:
                self.outcome = outcome
                self.transfer.finish("ok" if outcome.ok else "failed")
        finally:  # only now: the watch reads the outcome once it sees the job finished
            self.finished.set()
            self._changed.set()

    def _outcome(self) -> TargetOutcome | None:
        """This replica's outcome; None when the job was dropped or cut off (which has its own)."""
        try:
            return self._copy()
        except Cancelled:
            return None
        except BaseException as exc:  # noqa: BLE001 - any failure belongs to this target only
            self.backup_ended.wait()  # a failure while the backup runs is told with the backup's outcome
            if self.cancelled.is_set():
                return None
            if isinstance(exc, TimeoutError):  # a socket read that waited stall_timeout: the watch's verdict
                return self._stalled()
            return failed(self.replica, Role.REPLICA, exc, self.started)

    def _copy(self) -> TargetOutcome:
        with self.primary.files() as source:
            # Listed before the replica's login: the packs this backup adds come after, however slow the login.
            before = restic_files(source, "data") if self.follow else set()
            return self._copy_from(source, before)

    def _copy_from(self, source: RepositoryFiles, before: set[str]) -> TargetOutcome:
        session, replica = self.session, self.replica
        with replica.files() as dest:
            try:
                check_identity(source, dest, replica.display)
            except NotAReplica:
                self._wait_for_backup()
                return self._separate_backup()
            copier = Copier(source, dest, on_bytes=self.progress, cancelled=self.cancelled)
            if self.follow and not dest.list("locks"):  # a prune or check runs there: copy nothing meanwhile
                copier.follow(self.backup_ended, before)
            self._wait_for_backup()
            if dest.list("locks"):  # someone's restic may hold it exclusively (prune, check): wait for them
                session.restic.wait_for_lock(session.repository(replica))
                self.last_progress = time.monotonic()  # waiting for a lock is not a stall
            copier.catch_up()
            result = copier.result()
        log.debug("%s: %d files copied", replica.display, result.files)
        return delivered(replica, Role.REPLICA, tuple(self.made), result.bytes, time.monotonic() - self.started)

    def _wait_for_backup(self) -> None:
        self.backup_ended.wait()
        if self.cancelled.is_set():
            raise Cancelled

    def _separate_backup(self) -> TargetOutcome:
        """A repository that is not a replica gets each new snapshot's file streamed from the primary."""
        session = self.session
        source_repo, dest_repo = session.repository(self.primary), session.repository(self.replica)
        copies: list[SnapshotMade] = []
        added = 0
        for made in self.made:
            with session.restic.dump(source_repo, made.snapshot_id, "/" + made.file_name) as chunks:
                summary = session.restic.backup_stream(
                    dest_repo, self._tracked(chunks), filename=made.file_name, tags=made.tags,
                    compression=session.policy.compression,
                    stall_timeout_s=session.policy.stall_timeout.total_seconds())
            copies.append(replace(made, snapshot_id=summary.snapshot_id))
            added += summary.bytes_added
        return delivered(self.replica, Role.SEPARATE, tuple(copies), added, time.monotonic() - self.started)

    def _tracked(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            self.progress(len(chunk))
            yield chunk

