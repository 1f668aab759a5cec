"""Who may have written a file opsctl acts on: the user running opsctl, or root, and nobody else.

The policy says which commands opsctl runs and where passwords come from; a secret file, an SSH
key, a known_hosts file or the state folder steer what opsctl trusts and writes. If another user
can change or replace any of them (the file, or a folder above it), that user can make opsctl
(often running as root) run their commands or trust their host. Such a file is refused, with the
exact `chmod`/`chown` line that fixes it.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shlex
import stat
from dataclasses import dataclass
from pathlib import Path

from opsctl.errors import BadInput

_OTHERS_WRITE = stat.S_IWGRP | stat.S_IWOTH
_OTHERS_ANY = 0o077
_GROUP_BITS = 0o070
# The caller's own open files: `--policy /dev/stdin`, `--policy <(...)`. Nobody else can plant those.
_CALLERS_OWN = re.compile(r"^/(dev/stdin|dev/fd/\d+|proc/self/fd/\d+)$")


@dataclass(frozen=True)
class Distrust:
    """What is wrong with a file (or a folder above it), and the one command that fixes it."""

    problem: str
    fix: str

    def __str__(self) -> str:
        return f"{self.problem}; run: {self.fix}"


class UntrustedFile(BadInput):
    """A file or folder another user could change or replace (exit 2); the hint is the fixing command."""

    def __init__(self, what: str, distrust: Distrust) -> None:
        super().__init__(f"{what}: {distrust.problem}", f"run: {distrust.fix} (then run opsctl again)")
        self.distrust = distrust


def is_callers_own(path: Path) -> bool:
    """Standard input or a pipe the caller opened: theirs by construction, so not checked."""
    return _CALLERS_OWN.match(os.path.abspath(path)) is not None


def untrusted(path: Path, *, private: bool = False) -> Distrust | None:
    """Why another user could change `path` or replace it (None: they cannot); a missing file is None.

    Trusted means: owned by the user running opsctl or root, writable by nobody else (with
    `private`, also unreadable by others: secrets and SSH keys), and every folder above it the same
    (a shared folder such as /tmp is fine when it has the sticky bit: others cannot replace files there).
    """
    if is_callers_own(path):
        return None
    try:
        info = path.stat()
        link = path.lstat()
    except OSError:
        return None  # missing or unreadable: the caller says so in its own words
    return _link_problem(path, link) or _file_problem(path, info, private) or _folders_problem(path)


def untrusted_state_dir(folder: Path) -> Distrust | None:
    """Why the state folder cannot be used: an existing one must be ours alone (a new one is made 0700)."""
    try:
        info = folder.stat()
    except OSError:
        return _folders_problem(folder)
    if info.st_uid != os.geteuid():
        return Distrust(f"the folder {folder} is owned by {_user(info.st_uid)}, not by {_user(os.geteuid())}, "
                        "so that user can change opsctl's records and journal",
                        f"{_sudo()}chown -R {_user(os.geteuid())}: {_quoted(folder)} && chmod 700 {_quoted(folder)}")
    if info.st_mode & _others(info, _OTHERS_WRITE):
        return Distrust(f"the folder {folder} can be changed by other users (mode {_mode(info)})",
                        f"chmod 700 {_quoted(folder)}")
    return _folders_problem(folder)


def check_trusted(path: Path, what: str, *, private: bool = False) -> None:
    """Raise UntrustedFile (exit 2) when another user could change or replace `path`."""
    distrust = untrusted(path, private=private)
    if distrust is not None:
        raise UntrustedFile(what, distrust)


def check_state_dir(folder: Path) -> None:
    """Raise UntrustedFile (exit 2) when the state folder is not the user's own."""
    distrust = untrusted_state_dir(folder)
    if distrust is not None:
        raise UntrustedFile("the state_dir", distrust)


def chown_line(path: Path) -> str:
    """The command that gives `path` to the user running opsctl."""
    return f"{_sudo()}chown {_user(os.geteuid())}: {_quoted(path)}"


def _link_problem(path: Path, link: os.stat_result) -> Distrust | None:
    """A link another user made (in /tmp, say) chooses which of root's files opsctl reads: refused too."""
    if stat.S_ISLNK(link.st_mode) and link.st_uid not in (os.geteuid(), 0):
        return Distrust(f"{path} is a link made by {_user(link.st_uid)}, not by {_trusted_owners()}",
                        f"rm {_quoted(path)} (and give opsctl the file it points to)")
    return None


def _file_problem(path: Path, info: os.stat_result, private: bool) -> Distrust | None:
    if info.st_uid not in (os.geteuid(), 0):
        return Distrust(f"{path} is owned by {_user(info.st_uid)}, not by {_trusted_owners()}, "
                        "so that user decides what it says", chown_line(path))
    if private and info.st_mode & _OTHERS_ANY:  # as ssh itself: a key or secret is its owner's alone
        return Distrust(f"{path} can be read or changed by other users (mode {_mode(info)})",
                        f"chmod 600 {_quoted(path)}")
    if info.st_mode & _others(info, _OTHERS_WRITE):
        return Distrust(f"{path} can be changed by other users (mode {_mode(info)})", f"chmod go-w {_quoted(path)}")
    return None


def _others(info: os.stat_result, bits: int) -> int:
    """The permission bits that reach other users: the group's only when the group is not the owner's alone.

    With a user private group (Debian and Ubuntu give each user one, and umask 002 is common), a
    group-writable file is still writable by its owner only.
    """
    return bits & ~_GROUP_BITS if _group_is_owners_alone(info.st_gid, info.st_uid) else bits


def _group_is_owners_alone(gid: int, uid: int) -> bool:
    try:
        group = grp.getgrgid(gid)
        owner = pwd.getpwuid(uid)
    except KeyError:
        return False
    others = [user.pw_name for user in pwd.getpwall() if user.pw_gid == gid and user.pw_uid != uid]
    return owner.pw_gid == gid and not others and set(group.gr_mem) <= {owner.pw_name}


def _folders_problem(path: Path) -> Distrust | None:
    """The first folder above `path` (as given, and where its links lead) that others could change."""
    given = Path(os.path.abspath(path))
    real = Path(os.path.realpath(path))
    for folder in dict.fromkeys([*given.parents, *real.parents]):
        problem = _folder_problem(folder, path)
        if problem is not None:
            return problem
    return None


def _folder_problem(folder: Path, path: Path) -> Distrust | None:
    try:
        info = folder.stat()
    except OSError:
        return None  # not there yet (a state folder to be made): nothing to replace
    if info.st_uid not in (os.geteuid(), 0):
        return Distrust(f"the folder {folder} is owned by {_user(info.st_uid)}, so that user can replace {path}",
                        f"{_sudo()}chown {_user(os.geteuid())}: {_quoted(folder)} "
                        f"(or move {path} to a folder only you and root can change)")
    if info.st_mode & _others(info, _OTHERS_WRITE) and not info.st_mode & stat.S_ISVTX:
        return Distrust(f"the folder {folder} can be changed by other users (mode {_mode(info)}), so they can "
                        f"replace {path}", f"chmod go-w {_quoted(folder)}")
    return None


def _user(uid: int) -> str:
    """A user's name, or the number when it has none (chown takes either)."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _trusted_owners() -> str:
    return "root" if os.geteuid() == 0 else f"{_user(os.geteuid())} or root"


def _sudo() -> str:
    """Only root can give a file away; anyone else needs sudo for the fixing chown."""
    return "" if os.geteuid() == 0 else "sudo "


def _mode(info: os.stat_result) -> str:
    return f"{stat.S_IMODE(info.st_mode):o}"


def _quoted(path: Path) -> str:
    return shlex.quote(str(path))
