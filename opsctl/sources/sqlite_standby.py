"""SQLite standby: the verified staging file made read-only, then renamed over the previous standby.

rename(2) replaces the file in one step: a reader that opens the standby's path gets the old file
or the new one, whole. A reader that has the previous file open keeps reading it (its inode lives
until the last reader closes it), so no reader ever sees a mix of both copies or an error. The
file is mode 0440 (0400 with no reader group): readers open it with `file:PATH?mode=ro`. It is
in SQLite's rollback-journal mode, so reading it needs no -wal or -shm file and no write access
to its folder.
"""

from __future__ import annotations

import grp
import os
import sqlite3
import stat
from contextlib import closing
from pathlib import Path

from opsctl.durable import sync_folder
from opsctl.sources.base import StandbyState
from opsctl.sources.errors import DestinationRefused
from opsctl.sources.sqlite_publish import sidecars

_WRITE_BITS = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH


def reader_group(readers: tuple[str, ...]) -> int | None:
    """The one group whose members may read the standby (its id); None when only the owner reads it."""
    if len(readers) > 1:
        raise DestinationRefused(f"a SQLite standby is read through one group, and standby.readers names "
                                 f"{len(readers)}: {', '.join(readers)}",
                                 "give one group whose members may read the file, e.g. readers: [support]")
    if not readers:
        return None
    try:
        return grp.getgrnam(readers[0]).gr_gid
    except KeyError:
        raise DestinationRefused(f"the standby's reader group {readers[0]} does not exist on this machine",
                                 f"create it: groupadd {readers[0]}; and add the readers to it") from None


def swap(staging: Path, target: Path, readers: tuple[str, ...]) -> str | None:
    """Read-only staging renamed over target; returns target when it replaced a previous standby."""
    gid = reader_group(readers)
    existed = target.exists()
    if existed and (not target.is_file() or target.stat().st_mode & _WRITE_BITS):
        raise DestinationRefused(f"{target} exists and is not a read-only standby opsctl made, so it was left "
                                 "untouched", "move it away, or give standby.suffix another value")
    with closing(sqlite3.connect(f"{staging.resolve().as_uri()}?mode=rw", uri=True, isolation_level=None)) as conn:
        conn.execute("PRAGMA journal_mode = DELETE")  # readers then need no -wal/-shm beside it
    if gid is not None:
        try:
            os.chown(staging, -1, gid)
        except PermissionError:
            raise DestinationRefused(f"the standby cannot be given to group {readers[0]}: this user is not in it",
                                     f"run the refresh as root, or as a member of {readers[0]}") from None
    os.chmod(staging, 0o440 if gid is not None else 0o400)
    fd = os.open(staging, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    for sidecar in sidecars(target):  # a journal left beside the path would be replayed into the new file
        sidecar.unlink()
    os.rename(staging, target)
    sync_folder(target.parent)
    return str(target) if existed else None


def state(path: Path) -> StandbyState | None:
    try:
        found = path.stat()
    except FileNotFoundError:
        return None
    readers = []
    if found.st_mode & stat.S_IRGRP:
        try:
            readers.append(grp.getgrgid(found.st_gid).gr_name)
        except KeyError:
            readers.append(str(found.st_gid))
    if found.st_mode & stat.S_IROTH:
        readers.append("everyone")
    return StandbyState(exists=True, read_only=not found.st_mode & _WRITE_BITS, readers=tuple(readers),
                        size_bytes=found.st_size)
