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
from opsctl.targets import NotAReplica, Target
from opsctl.targets.replicate import Cancelled, check_identity, replicate

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
    jobs = [_Job(session, primary, replica, made, shown.transfer(f"copy → {replica.name}")) for replica in replicas]
    for job in jobs:
        job.thread.start()
    stall_s = session.policy.stall_timeout.total_seconds()
    while any(job.thread.is_alive() and not job.abandoned for job in jobs):
        time.sleep(0.2)
        for job in jobs:
            if job.thread.is_alive() and time.monotonic() - job.last_progress > stall_s:
                job.abandon()
    # Every job has ended (each sets its outcome) or was abandoned (which sets a stalled one).
    return [cast("TargetOutcome", job.outcome) for job in jobs]


class _Job:
    """One replica's copy, run in a daemon thread so a hung disk or socket cannot hold the run."""

    def __init__(self, session: Session, primary: Target, replica: Target, made: list[SnapshotMade],
                 transfer: Transfer) -> None:
        self.session, self.primary, self.replica, self.made = session, primary, replica, made
        self.transfer = transfer
        self.stall_s = session.policy.stall_timeout.total_seconds()
        self.cancelled = threading.Event()
        self.abandoned = False
        self.started = self.last_progress = time.monotonic()
        self.outcome: TargetOutcome | None = None
        self.thread = threading.Thread(target=self._run, name=f"replicate-{replica.name}", daemon=True)

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
            outcome = self._copy()
        except Cancelled:
            return
        except TimeoutError:  # a socket read that waited stall_timeout: the same verdict as the watch's
            outcome = self._stalled()
        except BaseException as exc:  # noqa: BLE001 - any failure belongs to this target only
            outcome = failed(self.replica, Role.REPLICA, exc, self.started)
        if not self.abandoned:
            self.outcome = outcome
            self.transfer.finish("ok" if outcome.ok else "failed")

    def _copy(self) -> TargetOutcome:
        session, replica = self.session, self.replica
        with replica.files() as dest, self.primary.files() as source:
            try:
                check_identity(source, dest, replica.display)
            except NotAReplica:
                return self._separate_backup()
            if dest.list("locks"):  # someone's restic may hold it exclusively (prune, check): wait for them
                session.restic.wait_for_lock(session.repository(replica))
                self.last_progress = time.monotonic()  # waiting for a lock is not a stall
            result = replicate(source, dest, on_bytes=self.progress, cancelled=self.cancelled)
        log.debug("%s: %d files copied", replica.display, result.files)
        return delivered(replica, Role.REPLICA, tuple(self.made), result.bytes, time.monotonic() - self.started)

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

