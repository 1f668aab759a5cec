"""Putting a restored SQLite file in place without harming the one it replaces.

The live file is moved aside (never deleted) while SQLite's own write lock is held, so no writer is
half-way through a transaction in the copy kept aside; the restored file takes the replaced file's
owner and mode, so the application can open it after the restore as it did before.
"""

from __future__ import annotations

import errno
import os
import secrets
import sqlite3
import stat
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import datetime
from pathlib import Path

from opsctl.durable import sync_folder
from opsctl.sources.errors import RestoreFailed

SIDECARS = ("-wal", "-shm", "-journal")
_LOCK_WAIT_S = 30  # how long a running write transaction may delay the move
_IN_USE_HINT = "stop the application that uses it, then run the restore again"


def publish_file(staging: Path, target: Path, owner_like: Path) -> Path | None:
    """Put staging at target; an existing target (with its sidecars) is moved aside and returned."""
    _take_owner_and_mode(staging, target if target.exists() else owner_like)
    aside = None
    if target.exists() or sidecars(target):
        _refuse_if_held(target)
        aside = free_aside_name(target)
        with _writers_locked_out(target):
            _move_with_sidecars(target, aside)
    # The lock's connection is closed first: closing a WAL connection deletes the -wal file by name,
    # which from now on would be the restored file's.
    _link_without_replacing(staging, target, aside)
    sync_folder(target.parent)
    return aside


def sidecars(path: Path) -> list[Path]:
    return [Path(f"{path}{suffix}") for suffix in SIDECARS if Path(f"{path}{suffix}").exists()]


def free_aside_name(path: Path) -> Path:
    stamp = datetime.now().astimezone().strftime("%Y%m%d-%H%M%S")
    while True:
        aside = Path(f"{path}.before-restore-{stamp}-{secrets.token_hex(2)}")
        if not aside.exists() and not sidecars(aside):
            return aside


def remove_with_sidecars(path: Path) -> None:
    for sidecar in sidecars(path):
        sidecar.unlink()
    path.unlink(missing_ok=True)


def _take_owner_and_mode(staging: Path, like: Path) -> None:
    """The restored file gets the owner, group and mode of the file it replaces (or of the source)."""
    try:
        found = like.stat()
    except OSError:
        return  # nothing to copy from: the private 0600 of the staging file stays
    if (found.st_uid, found.st_gid) != (os.geteuid(), os.getegid()):
        try:
            os.chown(staging, found.st_uid, found.st_gid)
        except PermissionError:
            raise RestoreFailed(f"the restored file cannot be given the owner of {like} (uid {found.st_uid})",
                                "run the restore as root or as that file's owner") from None
    os.chmod(staging, stat.S_IMODE(found.st_mode))


def _refuse_if_held(target: Path) -> None:
    """A process with the file open would go on writing into the copy moved aside: name it instead."""
    holders = _processes_holding({str(p) for p in (target, *sidecars(target))})
    if holders:
        raise RestoreFailed(f"{target} is in use by {', '.join(holders[:3])}, so it cannot be replaced",
                            _IN_USE_HINT)


def _processes_holding(paths: set[str]) -> list[str]:
    """`PID (name)` of every other process this user may see with one of the paths open."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if any(os.readlink(fd) in paths for fd in (entry / "fd").iterdir()):
                found.append(f"PID {entry.name} ({(entry / 'comm').read_text().strip()})")
        except OSError:
            continue  # gone, or not ours to look at
    return found


@contextmanager
def _writers_locked_out(target: Path) -> Iterator[None]:
    """SQLite's write lock on the live file, held while it is moved (readers may go on reading)."""
    try:
        conn = sqlite3.connect(f"{target.resolve().as_uri()}?mode=rw", uri=True, timeout=_LOCK_WAIT_S,
                               isolation_level=None)
    except sqlite3.Error:
        yield  # not a database SQLite can open (damaged, or not SQLite at all): nothing can be writing to it
        return
    with closing(conn):
        try:
            conn.execute("BEGIN EXCLUSIVE")
        except sqlite3.OperationalError:
            raise RestoreFailed(f"{target} stayed locked by a writer for {_LOCK_WAIT_S} s, so it was not replaced",
                                _IN_USE_HINT) from None
        except sqlite3.DatabaseError:
            yield  # not SQLite: nothing to lock
            return
        yield
        conn.rollback()


def _move_with_sidecars(path: Path, aside: Path) -> None:
    """Sidecars first: a -wal left behind would be replayed into the restored file."""
    for sidecar in sidecars(path):
        os.replace(sidecar, f"{aside}{str(sidecar)[len(str(path)):]}")
    if path.exists():
        os.replace(path, aside)


def _link_without_replacing(staging: Path, target: Path, aside: Path | None) -> None:
    """Never over a file that appeared meanwhile (an application that created a new, empty one)."""
    try:
        try:
            os.link(staging, target)
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV):
                raise
            if target.exists():  # a share without hard links: a checked rename
                raise FileExistsError(target) from None
            os.rename(staging, target)
            return
    except FileExistsError:
        kept = f"; the previous file is kept as {aside}" if aside else ""
        raise RestoreFailed(f"{target} was created by another program during the restore, so the restored file was "
                            f"not put there{kept}", _IN_USE_HINT) from None
    staging.unlink()
