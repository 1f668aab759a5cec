"""Replication: make another target hold the primary's repository files, byte for byte.

restic's files are content-addressed (a file's name is the SHA-256 of its content; only `config`
is not), so a replica is made by copying the files it lacks, checking each against its name, in
an order that never lets a file refer to one not yet there: packs, index, snapshots, keys, and
the config last of all. An interrupted copy leaves a repository restic opens as before; the next
run copies the rest. Nothing at the destination is ever overwritten or deleted here: each target
forgets and prunes by its own retention (see actions/prune.py).
"""

from __future__ import annotations

import hashlib
import logging
import posixpath
import threading
from dataclasses import dataclass
from typing import Callable, Iterable

from opsctl.targets.base import REPLICATION_ORDER, RepositoryFiles
from opsctl.targets.errors import DamagedFile, NotAReplica, TargetUnreachable

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
    for name in sorted(source.list("keys")):
        copy_file(source, dest, name)
    dest.write_new("config", source.read("config"))


def check_identity(source: RepositoryFiles, dest: RepositoryFiles, dest_display: str) -> None:
    """A replica has the very same config file as the source; anything else is refused, never overwritten."""
    if not dest.exists("config"):
        raise TargetUnreachable(f"there is no restic repository at {dest_display} yet", "run: opsctl init")
    if dest.read("config") != source.read("config"):
        raise NotAReplica(
            f"{dest_display} holds a repository of its own (not a replica of the primary)",
            "backups to it are made separately; to make it a replica, move that repository aside and run: opsctl init",
        )


def replicate(source: RepositoryFiles, dest: RepositoryFiles, *, skip_snapshots: Iterable[str] = (),
              on_bytes: Callable[[int], None] = lambda n: None,
              cancelled: threading.Event | None = None) -> CopyResult:
    """Copy to dest every file of source it lacks, folder by folder in REPLICATION_ORDER."""
    skip = {f"snapshots/{name}" for name in skip_snapshots}
    files = size = 0
    snapshots: list[str] = []
    for folder in REPLICATION_ORDER:
        missing = source.list(folder) - dest.list(folder) - skip
        log.debug("%d files of %s to copy", len(missing), folder)
        for name in sorted(missing):
            if cancelled is not None and cancelled.is_set():
                raise Cancelled()
            written = copy_file(source, dest, name)
            if written:
                files, size = files + 1, size + written
                on_bytes(written)
                if folder == "snapshots":
                    snapshots.append(posixpath.basename(name))
    return CopyResult(files=files, bytes=size, snapshots=tuple(snapshots))


def copy_file(source: RepositoryFiles, dest: RepositoryFiles, name: str) -> int:
    """Copy one content-addressed file, checked against its name; 0 when dest already had it."""
    content = source.read(name)
    expected = posixpath.basename(name)
    if hashlib.sha256(content).hexdigest() != expected:
        raise DamagedFile(f"the primary's file {name} does not match its checksum; it was not copied",
                          "run: opsctl check --read-data on the primary target")
    return len(content) if dest.write_new(name, content) else 0
