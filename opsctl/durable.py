"""Files that survive a crash: written whole and fsynced, with their folder entry synced too."""

from __future__ import annotations

import glob
import os
import secrets
from pathlib import Path


def create_synced(path: Path | str, content: bytes, mode: int = 0o600, *, dir_fd: int | None = None) -> None:
    """Create a new file (never an existing one, never through a link) with all of content, flushed to disk.

    With dir_fd, path is a name in that open folder.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dir_fd)
    try:
        view = memoryview(content)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_synced(path: Path, content: bytes, mode: int = 0o600) -> None:
    """Write aside, fsync, rename over: readers see the old file or the whole new one.

    The file written aside has a name of its own, so two writers never write into the same one.
    Callers hold a lock over `path`: what an earlier, killed writer left aside (it may be a copy of
    a password) is removed first.
    """
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        stale.unlink(missing_ok=True)
    spooled = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        create_synced(spooled, content, mode)
        os.rename(spooled, path)
    except BaseException:
        spooled.unlink(missing_ok=True)
        raise
    sync_folder(path.parent)


def sync_folder(folder: Path) -> None:
    """Make a rename or a new file in this folder durable."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
