"""What a killed run leaves behind: marked when made, removed by a later run once its maker is gone.

A kill -9, an OOM kill or a power cut skips every `finally`; scratch folders (a copy of a SQLite
database, secret files for restic) and scratch databases would then keep customers' data or keys
for ever. Each is marked at birth with who made it (host, boot, PID and the process's start time);
a later run removes only what carries such a mark and whose maker is provably gone: a name that
merely looks like opsctl's is never enough.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
import socket
import stat
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

log = logging.getLogger(__name__)

MARK_FILE = ".opsctl-made-by"
FOLDER_PREFIX = "opsctl-"
_MARK_KIND = "opsctl-scratch"
_STAGING_SUFFIX = "_opsctl_restore_"
_STAGING = re.compile(rf"{_STAGING_SUFFIX}[0-9a-f]{{6}}\Z")
_POINTER = "pointer-"  # a scratch folder that only says where another one is
_POINTS_TO = "points-to"
_SHM = Path("/dev/shm")  # noqa: S108 - memory-backed: secrets written there never reach a disk


@dataclass(frozen=True)
class Maker:
    """The process that made something: enough to tell, later, whether it can still be using it."""

    host: str
    boot: str
    pidns: int  # the PID namespace: a container sharing the host name and /dev/shm has PIDs of its own
    uid: int
    pid: int
    started: int  # the process's start time in clock ticks since boot: a reused PID has another

    def mark(self) -> str:
        return json.dumps({"kind": _MARK_KIND, **asdict(self)}, sort_keys=True)

    @classmethod
    def parse(cls, text: str) -> Maker | None:
        """The maker a mark names; None for anything that is not opsctl's mark."""
        try:
            data = json.loads(text)
            if not isinstance(data, dict) or data.pop("kind", None) != _MARK_KIND:
                return None
            maker = cls(**data)
        except (ValueError, TypeError):
            return None
        texts = isinstance(maker.host, str) and isinstance(maker.boot, str)
        numbers = all(isinstance(n, int) for n in (maker.pidns, maker.uid, maker.pid, maker.started))
        return maker if texts and numbers else None

    def is_gone(self) -> bool:
        """True only when this process can prove the maker no longer runs.

        Never for another host's, another PID namespace's (a container), or, unless we are root, another
        user's (hidepid may hide their processes): those may be running where we cannot see.
        """
        me_now = me()
        if (self.host, self.pidns) != (me_now.host, me_now.pidns) or not self.boot:
            return False
        if me_now.uid not in (self.uid, 0):
            return False
        return self.boot != me_now.boot or _start_time(self.pid) != self.started


@cache
def me() -> Maker:
    """This process, as a mark names it."""
    pid = os.getpid()
    return Maker(socket.gethostname(), _boot_id(), _pid_namespace(), os.geteuid(), pid, _start_time(pid) or 0)


def _pid_namespace() -> int:
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _start_time(pid: int) -> int | None:
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: count fields after its last ')'.
    return int(stat_line.rsplit(")", 1)[1].split()[19])


def staging_name(beside: str) -> str:
    """A new staging database's name next to `beside` (cut so it fits the engines' 63/64-character limits)."""
    return f"{beside[:40]}{_STAGING_SUFFIX}{secrets.token_hex(3)}"


def is_staging_name(name: str) -> bool:
    """Whether a database name is of the form staging_name makes (a mark alone is never enough to drop one)."""
    return _STAGING.search(name) is not None


def left_behind_database(name: str, mark: str | None, protected: Iterable[str]) -> bool:
    """A database a killed run made: a staging name, not one the policy backs up, marked by a maker that is gone.

    Whoever may change a database's comment can write a mark: the name and the sources decide too.
    """
    maker = Maker.parse(mark or "")
    return is_staging_name(name) and name not in protected and maker is not None and maker.is_gone()


def memory_folder() -> Path | None:
    """The memory-backed shared folder where this system has one we may write to; None: the temporary folder."""
    return _SHM if _SHM.is_dir() and os.access(_SHM, os.W_OK) else None


@contextmanager
def scratch_folder(purpose: str, parent: Path | None = None) -> Iterator[Path]:
    """A private (0700) folder, marked as this process's, removed when the block ends."""
    folder = marked_folder(purpose, parent)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def marked_folder(purpose: str, parent: Path | None = None, prefix: str = FOLDER_PREFIX) -> Path:
    """A new private (0700) folder holding this process's mark; the caller removes it."""
    if parent is not None:
        parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    folder = Path(tempfile.mkdtemp(prefix=f"{prefix}{purpose}-", dir=parent))
    _write_new(folder / MARK_FILE, me().mark())
    return folder


def remote_scratch(purpose: str, parent: Path, registry: Path) -> Path:
    """A marked folder outside the scratch parents (beside a restore's destination), with a pointer to it in
    `registry` so a sweep finds it after a kill."""
    folder = marked_folder(purpose, parent, prefix=f".{FOLDER_PREFIX}")
    _write_new(marked_folder(f"{_POINTER}{folder.name}", registry) / _POINTS_TO, str(folder))
    return folder


def remove_remote_scratch(folder: Path, registry: Path) -> None:
    """The folder, then its pointer (a kill between the two leaves a pointer the sweep drops)."""
    shutil.rmtree(folder, ignore_errors=True)
    for pointer in registry.glob(f"{FOLDER_PREFIX}{_POINTER}{folder.name}-*"):
        shutil.rmtree(pointer, ignore_errors=True)


def _write_new(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def scratch_parents(state_dir: Path) -> list[Path]:
    """Every folder where opsctl makes scratch folders."""
    found = [state_dir / "tmp", Path(tempfile.gettempdir())]
    shm = memory_folder()
    return found + ([shm] if shm is not None else [])


def stale_folders(parents: Iterable[Path]) -> list[Path]:
    """Scratch folders of runs that are gone: ours by mark, owned by us, and never reached through a symlink."""
    stale = []
    for parent in parents:
        try:
            entries = list(os.scandir(parent))
        except OSError:
            continue
        stale += [Path(e.path) for e in entries if e.name.startswith(FOLDER_PREFIX) and _is_stale(Path(e.path))]
    return stale


def _is_stale(folder: Path) -> bool:
    try:
        info = folder.lstat()
        mark = folder / MARK_FILE
        mark_info = mark.lstat()
        if not (stat.S_ISDIR(info.st_mode) and stat.S_ISREG(mark_info.st_mode)):
            return False
        if info.st_uid != os.geteuid() or mark_info.st_uid != os.geteuid():
            return False
        maker = Maker.parse(mark.read_text(errors="replace"))
    except OSError:
        return False
    return maker is not None and maker.is_gone()


def sweep_folders(state_dir: Path) -> list[Path]:
    """Remove the scratch folders killed runs left; return what was removed (logged, names only)."""
    removed = []
    for folder in stale_folders(scratch_parents(state_dir)):
        removed += _pointed_to(folder)
        shutil.rmtree(folder, ignore_errors=True)
        if not folder.exists() and not folder.name.startswith(f"{FOLDER_PREFIX}{_POINTER}"):
            removed.append(folder)
    if removed:
        log.warning("removed %d scratch folder(s) a killed opsctl run left behind: %s", len(removed),
                    ", ".join(str(f) for f in removed))
    return removed


def _pointed_to(pointer: Path) -> list[Path]:
    """The folder a stale pointer names, removed when it carries the very same (dead) maker's mark."""
    if not pointer.name.startswith(f"{FOLDER_PREFIX}{_POINTER}"):
        return []
    try:
        folder = Path((pointer / _POINTS_TO).read_text())
        same_maker = (folder / MARK_FILE).read_text() == (pointer / MARK_FILE).read_text()
    except (OSError, ValueError):
        return []
    if not (folder.is_absolute() and same_maker and _is_stale(folder)):
        return []
    shutil.rmtree(folder, ignore_errors=True)
    return [folder]
