"""Files that survive a crash: written whole and fsynced, with their folder entry synced too."""

from __future__ import annotations

import fcntl
import glob
import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path


def create_synced(path: Path | str, content: bytes, mode: int = 0o600, *, dir_fd: int | None = None) -> None:
    """Create a new file (never an existing one, never through a link) with all of content, flushed to disk.

    With dir_fd, path is a name in that open folder.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dir_fd)
    try:
        os.fchmod(fd, mode)  # exactly mode, whatever the umask (a systemd unit's UMask=0077 would hide metrics)
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


class ForeignFile(Exception):
    """A file opsctl was asked to replace holds something opsctl did not write."""


def replace_own(path: Path, content: bytes, mode: int, ours: Callable[[bytes], bool]) -> None:
    """replace_synced for a file in a folder others use too: one writer at a time (a lock file beside it), and
    an existing file is replaced only when `ours` says opsctl wrote it (else ForeignFile, nothing written)."""
    lock = os.open(path.with_name(f".{path.name}.lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not is_own(path, ours):
            raise ForeignFile(f"{path} holds something opsctl did not write")
        replace_synced(path, content, mode)
    finally:
        os.close(lock)


def is_own(path: Path, ours: Callable[[bytes], bool]) -> bool:
    """True when there is no file at path, or a regular file (not a link) whose start `ours` recognises."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return not path.is_symlink()  # a dangling link is not ours either
    except OSError:
        return False  # a link (ELOOP), or not readable
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # a folder, a FIFO, a device: never opsctl's file
        os.close(fd)
        return False
    with os.fdopen(fd, "rb") as handle:
        return ours(handle.read(_SNIFF_BYTES))


_SNIFF_BYTES = 1 << 20
