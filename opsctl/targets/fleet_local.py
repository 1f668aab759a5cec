"""The fleet folder beside a repository folder on a local disk or a mounted share, walked by folder descriptors.

Every folder below the operator's own path is opened one part at a time without following links
(O_NOFOLLOW, dir_fd), as the repository's own files are (targets/local.py): a link planted at fleet/
or fleet/<policy>/ is refused, never followed, so nothing is written or read outside the fleet folder.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext, suppress
from pathlib import Path

from opsctl.durable import create_synced
from opsctl.policy.trust import opened_regular, read_to_limit
from opsctl.targets.errors import TargetUnreachable
from opsctl.targets.fleet import (
    FILE_MODE,
    FOLDER,
    FOLDER_MODE,
    MAX_DOCUMENT,
    Listing,
    RefusedDocument,
    Tally,
    file_name,
    left_by_killed_run,
    not_a_document,
    not_a_folder,
    spool_name,
    too_big,
)

_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class LocalFleet:
    """fleet/ below `trusted` (the operator's own path: the repository's parent, or the share's mount point)."""

    def __init__(self, trusted: Path, folder: Path, display: str) -> None:
        self._trusted = trusted
        self._parts = folder.relative_to(trusted).parts
        self.display = display

    def __enter__(self) -> LocalFleet:
        return self

    def __exit__(self, *_exc: object) -> None:
        pass  # every descriptor is closed where it was opened

    def publish(self, policy: str, host: str, content: bytes) -> None:
        """Written aside in the same folder, fsynced, renamed over: a rename replaces a planted link, never
        follows it."""
        name = file_name(policy, host)
        with self._folder(policy, create=True) as fd:
            _remove_stale(fd, name)
            spooled = spool_name(name)
            try:
                create_synced(spooled, content, FILE_MODE, dir_fd=fd)
                os.rename(spooled, name, src_dir_fd=fd, dst_dir_fd=fd)
            except BaseException:
                with suppress(FileNotFoundError):
                    os.unlink(spooled, dir_fd=fd)
                raise
            os.fsync(fd)

    def listing(self) -> Listing:
        tally = Tally()
        try:
            with self._folder(None) as fleet, os.scandir(fleet) as entries:
                for entry in tally.entries(f"{FOLDER}/", entries):
                    if tally.policy_folder(entry.name, entry.is_dir(follow_symlinks=False)):
                        self._list_policy(fleet, entry.name, tally)
        except FileNotFoundError:  # no host has published here yet
            pass
        return tally.listing()

    def _list_policy(self, fleet: int, policy: str, tally: Tally) -> None:
        try:
            fd = self._open(fleet, policy, f"{FOLDER}/{policy}")
        except (FileNotFoundError, RefusedDocument):  # gone meanwhile, or swapped for a link: not a policy's folder
            tally.passed_over()
            return
        try:
            with os.scandir(fd) as entries:
                for entry in tally.entries(f"{FOLDER}/{policy}/", entries):
                    tally.document(policy, entry.name)  # a folder in a document's place is read, and refused
        finally:
            os.close(fd)

    def reader(self) -> nullcontext[LocalFleet]:
        """This folder itself: each read opens its own descriptors."""
        return nullcontext(self)

    def read(self, policy: str, host: str) -> bytes:
        name = file_name(policy, host)
        where = f"{FOLDER}/{policy}/{name}"
        with self._folder(policy) as fd:
            try:
                with opened_regular(Path(name), dir_fd=fd) as (handle, info):
                    if info.st_size > MAX_DOCUMENT:
                        raise too_big(where)
                    return read_to_limit(handle, MAX_DOCUMENT)
            except OSError as exc:
                raise _refused(exc, where) from None

    @contextmanager
    def _folder(self, policy: str | None, create: bool = False) -> Iterator[int]:
        """fleet/ (or fleet/<policy>/), reached from the trusted path one part at a time, following no link."""
        try:
            fd = os.open(self._trusted, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # the operator's own path
        except FileNotFoundError:
            raise TargetUnreachable(f"{self.display} cannot be reached: {self._trusted} does not exist",
                                    "check the path in the policy, and that the disk or share is there") from None
        walked: list[str] = []
        try:
            for part in (*self._parts, *([policy] if policy else [])):
                walked.append(part)
                child = self._open(fd, part, "/".join(walked[-2:]), create)
                os.close(fd)
                fd = child
            yield fd
        finally:
            os.close(fd)

    def _open(self, parent: int, part: str, where: str, create: bool = False) -> int:
        try:
            return _open_folder(parent, part, create)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise not_a_folder(self.display, where) from None
            raise


def _open_folder(parent: int, part: str, create: bool) -> int:
    try:
        return os.open(part, _FOLDER, dir_fd=parent)
    except FileNotFoundError:
        if not create:
            raise
    try:
        os.mkdir(part, FOLDER_MODE, dir_fd=parent)
    except FileExistsError:  # another host made it meanwhile: theirs, as it is
        return os.open(part, _FOLDER, dir_fd=parent)
    fd = os.open(part, _FOLDER, dir_fd=parent)
    os.fchmod(fd, FOLDER_MODE)  # mkdir's mode passes through the umask (a unit's UMask=0077): readers must list it
    return fd


def _remove_stale(folder: int, name: str) -> None:
    """This host's half-written copies a killed run left behind (plain files of opsctl's spool form only)."""
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_file(follow_symlinks=False) and left_by_killed_run(
                    entry.name, name, time.time() - entry.stat(follow_symlinks=False).st_mtime):
                with suppress(FileNotFoundError):
                    os.unlink(entry.name, dir_fd=folder)


def _refused(exc: OSError, where: str) -> RefusedDocument | OSError:
    """What is wrong with a document that could not be opened or read as a plain, small file."""
    if exc.errno in (errno.ELOOP, errno.EINVAL):
        return not_a_document(where, link=exc.errno == errno.ELOOP)
    if exc.errno == errno.EFBIG:
        return too_big(where)
    return exc
