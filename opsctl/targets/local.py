"""A repository in a folder on a local disk (and, through MountTarget, on a mounted NAS share)."""

from __future__ import annotations

import errno
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from opsctl.durable import create_synced, sync_folder
from opsctl.errors import BadInput
from opsctl.restic.repository import Repository
from opsctl.targets.base import ConfiguredTarget, Fact, repository_folders
from opsctl.targets.errors import MISSING_REPOSITORY_HINT, TargetFull, TargetUnreachable

if TYPE_CHECKING:
    from opsctl.policy.model import LocalTargetConfig, MountTargetConfig

LOW_SPACE = 1 << 30
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

    def prepare_init(self) -> None:
        """A new repository goes into a missing or empty folder, never among someone else's files."""
        if self.path.exists() and not self.path.is_dir():
            raise BadInput(f"target {self.name}: {self.path} is a file, not a folder", "point targets.path at a folder")
        if self.path.is_dir() and not _empty_or_unfinished_replica(self.path):
            raise BadInput(f"target {self.name}: {self.path} is not empty and holds no restic repository",
                           "point the target at an empty folder; opsctl will not write among other files")
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)

    @contextmanager
    def files(self) -> Iterator[LocalFiles]:
        self.probe()
        yield LocalFiles(self.path, self.display)

    def facts(self) -> list[Fact]:
        try:
            free = shutil.disk_usage(self.path).free
        except OSError as exc:
            return [Fact("free space", False, f"cannot read: {exc.strerror}", "check that the folder exists")]
        return [Fact("free space", free >= LOW_SPACE, f"{free / (1 << 30):.1f} GiB free",
                     None if free >= LOW_SPACE else "free some space or move the repository to a bigger disk")]


class LocalFiles:
    """A repository's files on a filesystem; new files appear whole (written aside, then linked in)."""

    def __init__(self, root: Path, display: str) -> None:
        self.root = root
        self.display = display
        self._spool = root / ".opsctl-incoming"

    def clean_spool(self, older_than_s: float = 3600) -> None:
        """Remove half-written copies a killed run left behind (never a live run's: they are young)."""
        if not self._spool.is_dir():
            return
        for entry in self._spool.iterdir():
            if time.time() - entry.stat().st_mtime > older_than_s:
                entry.unlink(missing_ok=True)

    def list(self, folder: str) -> set[str]:
        top = self.root / folder
        found: set[str] = set()
        for dirpath, _, filenames in os.walk(top):
            relative = Path(dirpath).relative_to(self.root)
            found.update(str(relative / name) for name in filenames)
        return found

    def read(self, name: str) -> bytes:
        return (self.root / name).read_bytes()

    def exists(self, name: str) -> bool:
        return (self.root / name).exists()

    def make_layout(self) -> None:
        """The folders restic init creates, so a seeded replica looks like any other repository."""
        for folder in repository_folders():
            (self.root / folder).mkdir(parents=True, exist_ok=True, mode=0o700)

    def write_new(self, name: str, content: bytes) -> bool:
        final = self.root / name
        final.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._spool.mkdir(exist_ok=True, mode=0o700)
        spooled = self._spool / f"{final.name}.{uuid.uuid4().hex[:8]}"
        try:
            create_synced(spooled, content, 0o400)  # restic keeps its files read-only too
            _link_new(spooled, final)
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise TargetFull(f"{self.display} is full",
                                 "free space on that disk; the next backup completes the copy") from None
            raise
        finally:
            spooled.unlink(missing_ok=True)
        sync_folder(final.parent)
        return True


def _empty_or_unfinished_replica(path: Path) -> bool:
    """Empty, or only restic's folders with no config: a replica whose set-up was cut off may be finished."""
    allowed = {"keys", "locks", "snapshots", "index", "data", ".opsctl-incoming"}
    return not (path / "config").exists() and all(e.name in allowed and e.is_dir() for e in path.iterdir())


def _link_new(spooled: Path, final: Path) -> None:
    """Put a file in place without ever replacing one; shares without hard links fall back to a checked rename."""
    try:
        os.link(spooled, final)
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV):
            raise
        if final.exists():
            raise FileExistsError(final) from None
        os.rename(spooled, final)
