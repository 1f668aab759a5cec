"""A repository in a folder on a local disk (and, through MountTarget, on a mounted NAS share)."""

from __future__ import annotations

import errno
import os
import posixpath
import re
import secrets
import shutil
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from opsctl.durable import create_synced
from opsctl.errors import BadInput
from opsctl.restic.repository import Repository
from opsctl.targets import fleet
from opsctl.targets.base import ConfiguredTarget, Fact, repository_folders
from opsctl.targets.errors import MISSING_REPOSITORY_HINT, TargetFull, TargetUnreachable, hostile
from opsctl.targets.fleet_local import LocalFleet
from opsctl.targets.replicate import MAX_FILE_SIZE, TOO_BIG, check_writable

if TYPE_CHECKING:
    from opsctl.policy.model import LocalTargetConfig, MountTargetConfig

LOW_SPACE = 1 << 30
SPOOL = ".opsctl-incoming"
# What write_new names its spooled copies (restic's files, and the audit trail's batches).
_SPOOLED = re.compile(r"(?:[0-9a-f]{64}|config|\d{10}-\d{10}\.jsonl)\.[0-9a-f]{8}")
_DEEPEST_FOLDER = 1  # data/xx: restic keeps no folder deeper; nothing below it is listed
_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # NONBLOCK: a planted pipe must not hang open()
FolderConfigT = TypeVar("FolderConfigT", bound="LocalTargetConfig | MountTargetConfig")


class LocalTarget(ConfiguredTarget[FolderConfigT]):
    kind = "local"

    def __init__(self, config: FolderConfigT, stall_timeout_s: float = 300.0) -> None:
        super().__init__(config, stall_timeout_s)
        self.path: Path = config.path

    @property
    def display(self) -> str:
        return f"{self.name} ({self.kind} {self.path})"

    def repository(self, password: bytes) -> Repository:
        return Repository(location=str(self.path), display=self.display, password=password)

    def probe(self) -> None:
        if not self.path.is_dir():
            raise TargetUnreachable(f"there is no restic repository at {self.display} (the folder does not exist)",
                                    MISSING_REPOSITORY_HINT)
        with self._files() as files:  # before restic writes there: it would follow a planted link
            files.check_layout()

    def prepare_init(self) -> None:
        """A new repository goes into a missing or empty folder, never among someone else's files."""
        if self.path.exists() and not self.path.is_dir():
            raise BadInput(f"target {self.name}: {self.path} is a file, not a folder", "point targets.path at a folder")
        if self.path.is_dir() and not _empty_or_unfinished_replica(self.path):
            raise BadInput(f"target {self.name}: {self.path} is not empty and holds no restic repository",
                           "point the target at an empty folder; opsctl will not write among other files")
        try:
            self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        except PermissionError:
            raise BadInput(f"target {self.name}: opsctl may not create {self.path} (permission denied)",
                           "create the folder, owned by the user that runs opsctl (mode 700), or point targets.path "
                           "at a folder that user may write; then run opsctl init again") from None
        with self._files() as files:
            files.check_layout()

    @contextmanager
    def files(self) -> Iterator[LocalFiles]:
        self.probe()
        with self._files() as files:
            yield files

    def _files(self) -> LocalFiles:
        return LocalFiles(self.path, self.display, self.trusted_path())

    def trusted_path(self) -> Path:
        """Where the operator's own path ends: a link in it is the operator's choice (below, the storage's)."""
        return self.path

    def fleet(self) -> LocalFleet:
        """fleet/ in the repository's parent folder, which is the operator's own path as the repository's is."""
        folder = fleet.local_folder(self.path)
        trusted = self.trusted_path()
        return LocalFleet(trusted if folder.parent.is_relative_to(trusted) else folder.parent, folder,
                          f"{self.name} ({self.kind} {folder})")

    def facts(self) -> list[Fact]:
        try:
            free = shutil.disk_usage(self.path).free
        except OSError as exc:
            return [Fact("free space", False, f"cannot read: {exc.strerror}", "check that the folder exists")]
        return [Fact("free space", free >= LOW_SPACE, f"{free / (1 << 30):.1f} GiB free",
                     None if free >= LOW_SPACE else "free some space or move the repository to a bigger disk")]


class LocalFiles:
    """A repository's files on a filesystem; new files appear whole (written aside, then linked in).

    The storage may be hostile (a NAS share): every folder is opened from the root one part at a time
    without following links (O_NOFOLLOW, dir_fd), so a symlink anywhere inside the repository is refused,
    never followed, and nothing is written or deleted outside it.
    """

    def __init__(self, root: Path, display: str, trusted: Path | None = None) -> None:
        self.root = root
        self.display = display
        # Where the operator's own path ends: above it links are theirs; below it, the storage's.
        self._trusted = trusted or root
        self._folders: dict[str, int] = {}  # open folders by relative name ("" is the root); top level only

    def __enter__(self) -> LocalFiles:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        for fd in self._folders.values():
            os.close(fd)
        self._folders.clear()

    def clean_spool(self, older_than_s: float = 3600) -> None:
        """Remove half-written copies a killed run left behind (never a live run's: they are young).

        Only names of opsctl's own spool form that are plain files: never someone else's, never through a link.
        """
        try:
            with self._folder(SPOOL) as spool, os.scandir(spool) as entries:
                for entry in entries:
                    if _SPOOLED.fullmatch(entry.name) and _stale(entry, older_than_s):
                        with suppress(FileNotFoundError):
                            os.unlink(entry.name, dir_fd=spool)
        except FileNotFoundError:
            return

    def check_layout(self) -> None:
        """Refuse a link among the repository's folders (the top level and data/xx), before restic writes there."""
        for folder in ("", "data"):
            try:
                with self._folder(folder) as fd, os.scandir(fd) as entries:
                    for entry in entries:
                        if entry.is_symlink():
                            raise hostile(self.display, "a symbolic link", posixpath.join(folder, entry.name))
            except FileNotFoundError:
                continue

    def list(self, folder: str) -> set[str]:
        found: set[str] = set()
        try:
            with self._folder(folder) as fd:
                self._walk(fd, folder, found)
        except FileNotFoundError:
            pass
        return found

    def _walk(self, fd: int, relative: str, found: set[str]) -> None:
        """Files below an open folder, down to restic's depth (data/xx/ID); a link or a device is refused."""
        with os.scandir(fd) as entries:
            for entry in entries:
                name = f"{relative}/{entry.name}"
                if entry.is_file(follow_symlinks=False):
                    found.add(name)
                elif entry.is_dir(follow_symlinks=False):
                    if name.count("/") <= _DEEPEST_FOLDER:
                        self._walk_into(fd, entry.name, name, found)
                else:
                    raise hostile(self.display, _odd(entry.is_symlink()), name)

    def _walk_into(self, parent: int, part: str, name: str, found: set[str]) -> None:
        try:
            fd = self._open_folder(parent, part, name)
        except FileNotFoundError:  # removed meanwhile (a prune): as os.walk, skipped
            return
        try:
            self._walk(fd, name, found)
        finally:
            os.close(fd)

    def read(self, name: str) -> bytes:
        check_writable(name, self.display)
        folder, base = posixpath.split(name)
        with self._folder(folder) as parent:
            fd = self._open_file(parent, base, name)
        with os.fdopen(fd, "rb") as handle:
            return handle.read()

    def exists(self, name: str) -> bool:
        check_writable(name, self.display)
        folder, base = posixpath.split(name)
        try:
            with self._folder(folder) as parent:
                mode = os.stat(base, dir_fd=parent, follow_symlinks=False).st_mode
        except FileNotFoundError:
            return False
        if not stat.S_ISREG(mode):
            raise hostile(self.display, _odd(stat.S_ISLNK(mode)), name)
        return True

    def make_layout(self) -> None:
        """The folders restic init creates, so a seeded replica looks like any other repository."""
        for folder in repository_folders():
            with self._folder(folder, create=True):
                pass

    def write_new(self, name: str, content: bytes) -> bool:
        check_writable(name, self.display)
        folder, base = posixpath.split(name)
        try:
            with self._folder(folder, create=True) as parent, self._folder(SPOOL, create=True) as spool:
                return _put(spool, parent, base, content)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise TargetFull(f"{self.display} is full",
                                 "free space on that disk; the next backup completes the copy") from None
            raise

    @contextmanager
    def _folder(self, relative: str, create: bool = False) -> Iterator[int]:
        """An open folder of the repository, reached from the root without following any link."""
        fd, walked, opened = self._root(), "", []
        try:
            for part in relative.split("/") if relative else ():
                walked = posixpath.join(walked, part)
                known = self._folders.get(walked)
                if known is None:
                    known = self._open_folder(fd, part, walked, create)
                    if "/" in walked:  # data/xx: 256 of them, opened per use (open files are limited)
                        opened.append(known)
                    else:
                        self._folders[walked] = known
                fd = known
            yield fd
        finally:
            for each in opened:
                os.close(each)

    def _root(self) -> int:
        if "" not in self._folders:
            fd = os.open(self._trusted, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            for part in self.root.relative_to(self._trusted).parts:
                try:
                    child = self._open_folder(fd, part, str(self.root))
                finally:
                    os.close(fd)
                fd = child
            self._folders[""] = fd
        return self._folders[""]

    def _open_folder(self, parent: int, part: str, name: str, create: bool = False) -> int:
        if part in (".", "..", ""):
            raise hostile(self.display, "a name outside its folder", name)
        try:
            return _open_at(parent, part, _FOLDER, self.display, name)
        except FileNotFoundError:
            if not create:
                raise
        with suppress(FileExistsError):
            os.mkdir(part, 0o700, dir_fd=parent)
        return _open_at(parent, part, _FOLDER, self.display, name)

    def _open_file(self, parent: int, base: str, name: str) -> int:
        fd = _open_at(parent, base, _READ, self.display, name)
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_FILE_SIZE:
            os.close(fd)
            raise hostile(self.display, _odd(False) if not stat.S_ISREG(info.st_mode) else TOO_BIG, name)
        return fd


def _open_at(parent: int, part: str, flags: int, display: str, name: str) -> int:
    """os.open relative to a folder; a link there (ELOOP) or a file where a folder belongs (ENOTDIR) is hostile."""
    try:
        return os.open(part, flags, dir_fd=parent)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise hostile(display, "a symbolic link", name) from None
        if exc.errno == errno.ENOTDIR:
            raise hostile(display, "a file where restic keeps a folder", name) from None
        raise


def _odd(link: bool) -> str:
    return "a symbolic link" if link else "a device, pipe or socket where restic keeps a file"


def _stale(entry: os.DirEntry[str], older_than_s: float) -> bool:
    """A plain file (never a link, never followed) not touched for older_than_s."""
    info = entry.stat(follow_symlinks=False)
    return stat.S_ISREG(info.st_mode) and time.time() - info.st_mtime > older_than_s


def _put(spool: int, parent: int, base: str, content: bytes) -> bool:
    """Write aside in the spool, then link into place; False when the name was already there."""
    spooled = f"{base}.{secrets.token_hex(4)}"
    try:
        create_synced(spooled, content, 0o400, dir_fd=spool)  # read-only: restic keeps its files so too
        try:
            _link_new(spool, spooled, parent, base)
        except FileExistsError:
            return False
    finally:
        with suppress(FileNotFoundError):
            os.unlink(spooled, dir_fd=spool)
    os.fsync(parent)
    return True


def _empty_or_unfinished_replica(path: Path) -> bool:
    """Empty, or only restic's folders (no config): a replica whose set-up was cut off may be finished."""
    allowed = {"keys", "locks", "snapshots", "index", "data", SPOOL}
    with os.scandir(path) as entries:  # a link is never a folder here: it is someone else's file
        return all(e.name in allowed and e.is_dir(follow_symlinks=False) for e in entries)


def _link_new(spool: int, spooled: str, parent: int, base: str) -> None:
    """Put a file in place without ever replacing one; shares without hard links fall back to a checked rename."""
    try:
        os.link(spooled, base, src_dir_fd=spool, dst_dir_fd=parent, follow_symlinks=False)
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV):
            raise
        try:
            os.stat(base, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            os.rename(spooled, base, src_dir_fd=spool, dst_dir_fd=parent)
            return
        raise FileExistsError(base) from None
