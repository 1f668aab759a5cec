"""Replication: make another target hold the primary's repository files, byte for byte.

restic's files are content-addressed (a file's name is the SHA-256 of its content; only `config`
is not), so a replica is made by copying the files it lacks, checking each against its name, in
an order that never lets a file refer to one not yet there: packs, index, snapshots, keys, and
the config last of all. An interrupted copy leaves a repository restic opens as before; the next
run copies the rest. Nothing at the destination is ever overwritten or deleted here: each target
forgets and prunes by its own retention (see actions/prune.py), and marks what it forgot so that
no replication brings it back.
"""

from __future__ import annotations

import hashlib
import logging
import posixpath
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from opsctl.targets.base import REPLICATION_ORDER, RepositoryFiles
from opsctl.targets.errors import (
    MISSING_REPOSITORY_HINT,
    DamagedFile,
    NotAReplica,
    ReplicaChanged,
    TargetError,
    TargetUnreachable,
    hostile,
    shown,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CopyResult:
    files: int
    bytes: int
    snapshots: tuple[str, ...]


class Cancelled(Exception):
    """The action gave up on this target (it stalled); the worker stops at the next file."""


def seed(source: RepositoryFiles, dest: RepositoryFiles, dest_display: str) -> None:
    """Turn an empty place into an empty replica of the source: same identity, same keys, no data yet."""
    if dest.exists("config"):
        raise NotAReplica(f"{dest_display} already holds a repository", "it was left untouched")
    dest.make_layout()
    for name in sorted(restic_files(source, "keys")):
        copy_file(source, dest, name)
    dest.write_new("config", source.read("config"))


def check_identity(source: RepositoryFiles, dest: RepositoryFiles, dest_display: str) -> None:
    """A replica has the very same config file as the source; anything else is refused, never overwritten."""
    if not dest.exists("config"):
        raise TargetUnreachable(f"there is no restic repository at {dest_display}", MISSING_REPOSITORY_HINT)
    if dest.read("config") != source.read("config"):
        raise NotAReplica(
            f"{dest_display} holds a repository of its own (not a replica of the primary)",
            "backups to it are made separately; to make it a replica, move that repository aside and run: opsctl init",
        )


FORGOTTEN = ".opsctl-forgotten"
# The audit trail's hashes, kept beside the repository (never inside restic's folders): one new file per
# batch of entries, never replaced; named by chain (its first 16 hex digits) and the first and last entry
# (opsctl.audit.offsite names them).
_AUDIT_COPY = re.compile(r"opsctl-audit/[0-9a-f]{16}/\d{10}-\d{10}\.jsonl")
_ID = re.compile(r"[0-9a-f]{64}")
_FLAT_FOLDERS = ("keys", "index", "snapshots")
_DATA_FILE_DEPTH = 3  # data/<first two hex digits of the ID>/<ID>
# restic 0.14 writes packs of at most 128 MiB (--pack-size); a file far larger is no restic file and, read
# whole, would exhaust memory.
MAX_FILE_SIZE = 256 << 20
TOO_BIG = "a file larger than restic ever writes"
# Path parts no honest listing holds: they climb out of the folder listed, or name it twice.
_CLIMBING = frozenset({"", ".", ".."})
# How often a copy that follows a running backup looks for newly completed packs.
FOLLOW_INTERVAL_S = 0.25


def restic_name(name: str) -> bool:
    """Exactly restic's layout: config, keys|index|snapshots/<ID>, data/<first two of ID>/<ID> (ID: 64 hex)."""
    if name == "config":
        return True
    parts = name.split("/")
    if len(parts) == _DATA_FILE_DEPTH - 1:
        return parts[0] in _FLAT_FOLDERS and _ID.fullmatch(parts[1]) is not None
    return (len(parts) == _DATA_FILE_DEPTH and parts[0] == "data" and _ID.fullmatch(parts[2]) is not None
            and parts[1] == parts[2][:2])


def writable_name(name: str) -> bool:
    """A name opsctl may create in a target: a restic file, a mark of a forgotten snapshot, an audit copy."""
    folder, _, snapshot_id = name.partition("/")
    return (restic_name(name) or (folder == FORGOTTEN and _ID.fullmatch(snapshot_id) is not None)
            or audit_copy_name(name))


def audit_copy_name(name: str) -> bool:
    """opsctl-audit/<chain>/<first>-<last>.jsonl, exactly."""
    return _AUDIT_COPY.fullmatch(name) is not None


def climbs(name: str) -> bool:
    """True for a name that leaves its folder (`..`), is absolute, or is no plain relative path."""
    return "\x00" in name or any(part in _CLIMBING for part in name.split("/"))


def check_writable(name: str, display: str) -> None:
    """Refuse, before any write, a name outside restic's layout (callers filter listings first: a bug otherwise)."""
    if not writable_name(name):
        raise TargetError(f"opsctl refused to write {shown(name)} to {display}: not a name in restic's layout",
                          "nothing was written; this is a bug in opsctl, please report it")


def listed_names(files: RepositoryFiles, folder: str) -> set[str]:
    """What a target lists under one folder; a name that climbs out of it means the target is hostile."""
    names = files.list(folder)
    for name in names:
        if climbs(name) or not name.startswith(f"{folder}/"):
            raise hostile(display_of(files), "a name outside its folder", name)
    return names


def display_of(files: RepositoryFiles) -> str:
    """The target's display name (every RepositoryFiles of opsctl has one)."""
    return str(getattr(files, "display", "a target"))


def restic_files(files: RepositoryFiles, folder: str) -> set[str]:
    """The files restic itself would read: content-addressed names in restic's exact layout only.

    restic writes `ID-tmp-N` files and renames them when complete; a killed run leaves them
    behind, and they are not part of the repository (nor are other tools' stray files): ignored.
    """
    return {name for name in listed_names(files, folder) if restic_name(name)}


def forgotten(dest: RepositoryFiles) -> set[str]:
    """Snapshot IDs this target's own prune removed: replication must not bring them back."""
    marks = (name.partition("/")[2] for name in listed_names(dest, FORGOTTEN))
    return {mark for mark in marks if _ID.fullmatch(mark)}


def mark_forgotten(dest: RepositoryFiles, snapshot_ids: Iterable[str]) -> None:
    """Remember, in the target itself, snapshots about to be forgotten there (for every policy and host)."""
    for snapshot_id in snapshot_ids:
        if not _ID.fullmatch(snapshot_id):  # restic reported it from that target's files
            raise hostile(display_of(dest), "a snapshot whose ID is not one", snapshot_id)
        dest.write_new(f"{FORGOTTEN}/{snapshot_id}", b"")


def replicate(source: RepositoryFiles, dest: RepositoryFiles, *, on_bytes: Callable[[int], None] = lambda _n: None,
              cancelled: threading.Event | None = None) -> CopyResult:
    """Copy to dest every restic file of source it lacks, in REPLICATION_ORDER."""
    copier = Copier(source, dest, on_bytes=on_bytes, cancelled=cancelled)
    copier.catch_up()
    return copier.result()


class Copier:
    """One replica's copy: packs while the primary's backup still runs (follow), then everything it lacks."""

    def __init__(self, source: RepositoryFiles, dest: RepositoryFiles, *,
                 on_bytes: Callable[[int], None] = lambda _n: None, cancelled: threading.Event | None = None) -> None:
        self.source, self.dest = source, dest
        self._on_bytes = on_bytes
        self._cancelled = cancelled or threading.Event()
        self._copied: dict[str, list[str]] = {}
        self._bytes = 0

    def follow(self, ended: threading.Event, before: set[str]) -> None:
        """Until `ended`, copy each pack the primary completes that is not among `before` (its packs when the
        backup began; restic names a pack only once it is whole).

        Packs alone are copied here: nothing names them until the index and snapshot arrive, which only
        catch_up copies, after listing the replica afresh. Anything odd ends the following quietly and is
        left to catch_up, which reads everything again and decides; only a stall or a cancel is final.
        """
        try:
            self._follow(ended, set(before))
        except (Cancelled, TimeoutError):
            raise
        except Exception:  # catch_up tries again, and reports what still fails
            log.debug("copying packs during the backup stopped; the final copy takes over", exc_info=True)

    def _follow(self, ended: threading.Event, seen: set[str]) -> None:
        interval_s = FOLLOW_INTERVAL_S
        while not ended.wait(interval_s):
            started = time.monotonic()
            fresh = sorted(restic_files(self.source, "data") - seen)
            # Listing a large remote primary costs: never spend more than a tenth of the time on it.
            interval_s = max(FOLLOW_INTERVAL_S, 10 * (time.monotonic() - started))
            for name in fresh:
                self._check_cancelled()
                seen.add(name)
                try:
                    self._copy(name)
                except DamagedFile:  # not expected of a named pack; catch_up reads it again and decides
                    log.debug("%s did not match its name while the backup ran; left to the final copy", name)

    def catch_up(self) -> None:
        """Copy every restic file dest lacks, in REPLICATION_ORDER, each kind checked in place before the next.

        The source is listed newest-kind first (snapshots, index, data): restic writes packs, then the
        index, then the snapshot, so everything a listed snapshot or index refers to is in the later
        listings, even while another run writes to the source. The replica is listed afresh: a prune
        there may have removed any pack, the ones copied while the backup ran included.
        """
        self.dest.clean_spool()
        listed = {folder: restic_files(self.source, folder) for folder in reversed(REPLICATION_ORDER)}
        skip = {f"snapshots/{name}" for name in forgotten(self.dest)}
        for folder in REPLICATION_ORDER:
            missing = sorted(listed[folder] - listed_names(self.dest, folder) - skip)
            log.debug("%d files of %s to copy", len(missing), folder)
            for name in missing:
                self._check_cancelled()
                self._copy(name)
            if folder in _NAMED_LATER:  # before anything names them, they must still be there
                self._confirm((folder,))
        self._confirm(_NAMED_LATER)  # and once more at the end, as a prune may have run meanwhile

    def result(self) -> CopyResult:
        """What this copier wrote."""
        snapshots = tuple(posixpath.basename(n) for n in self._copied.get("snapshots", ()))
        return CopyResult(files=sum(map(len, self._copied.values())), bytes=self._bytes, snapshots=snapshots)

    def _confirm(self, kinds: tuple[str, ...]) -> None:
        """A prune by another restic client during the copy can delete packs whose snapshot had not arrived."""
        written = {name for kind in kinds for name in self._copied.get(kind, ())}
        gone = written - _listed_again(self.dest, written)
        if gone:
            raise ReplicaChanged(
                f"{len(gone)} files copied to this target were removed during the copy (a prune by another "
                "restic client?)",
                "the next backup copies them again; do not prune a target while opsctl copies to it")

    def _copy(self, name: str) -> None:
        written = copy_file(self.source, self.dest, name)
        if written:
            self._bytes += written
            self._copied.setdefault(name.partition("/")[0], []).append(name)
            self._on_bytes(written)

    def _check_cancelled(self) -> None:
        if self._cancelled.is_set():
            raise Cancelled


_NAMED_LATER = ("data", "index")  # packs are named by index files, index files by nothing but are read whole
_FEW_FOLDERS = 16  # data/xx folders listed one by one; more, and the whole of data is listed (in parallel)


def _listed_again(dest: RepositoryFiles, names: set[str]) -> set[str]:
    """Which of names dest lists now: their folders alone when a few (a small backup touches few of data's 256)."""
    folders = {posixpath.dirname(name) for name in names}
    if len(folders) > _FEW_FOLDERS:
        folders = {name.partition("/")[0] for name in names}
    return set().union(*(listed_names(dest, folder) for folder in sorted(folders)))


def copy_file(source: RepositoryFiles, dest: RepositoryFiles, name: str) -> int:
    """Copy one content-addressed file, checked against its name; 0 when dest already had it."""
    if not restic_name(name):  # rotate and seed pass names straight from a listing: never trust them here
        raise hostile(display_of(source), "a file outside restic's layout", name)
    content = source.read(name)
    expected = posixpath.basename(name)
    if hashlib.sha256(content).hexdigest() != expected:
        raise DamagedFile(f"the primary's file {name} does not match its checksum; it was not copied",
                          "run: opsctl check --read-data-subset 100% --target on the primary, and restore "
                          "from another target if it is damaged")
    return len(content) if dest.write_new(name, content) else 0
