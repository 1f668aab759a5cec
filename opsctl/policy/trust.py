"""Who may have written a file opsctl acts on: the user running opsctl, or root, and nobody else.

The policy says which commands opsctl runs and where passwords come from; a secret file, an SSH
key, a known_hosts file or the state folder steer what opsctl trusts and writes. If another user
can change or replace any of them (the file, or a folder above it), that user can make opsctl
(often running as root) run their commands or trust their host. Such a file is refused, with the
exact `chmod`/`chown` line that fixes it.

A command that only reads (`status --offline`, an auditor's) may also read a policy owned by another
user, and that owner's (or root's) state folder: it runs nothing the policy names, reads no secret
and writes nothing there, so the file's owner decides only what it is shown.
"""

from __future__ import annotations

import errno
import grp
import os
import pwd
import re
import shlex
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from opsctl.errors import BadInput

_OTHERS_WRITE = stat.S_IWGRP | stat.S_IWOTH
_OTHERS_ANY = 0o077
_GROUP_BITS = 0o070
# Far more than any policy or run record; a bigger file is not one of them, and is not read whole.
READ_LIMIT = 16 * 1024 * 1024
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


def untrusted(path: Path, *, private: bool = False, also: int | None = None) -> Distrust | None:
    """Why another user could change `path` or replace it (None: they cannot); a missing file is None.

    Trusted means: owned by the user running opsctl or root (or `also`: the owner of a policy a read-only
    command reads), writable by nobody else (with `private`, also unreadable by others: secrets and SSH
    keys), and every folder above it the same (a shared folder such as /tmp is fine when it has the
    sticky bit: others cannot replace files there).
    """
    if is_callers_own(path):
        return None
    try:
        info = path.stat()
        link = path.lstat()
    except OSError:
        return None  # missing or unreadable: the caller says so in its own words
    owners = _owners(also)
    return (_link_problem(path, link, owners) or _file_problem(path, info, private, owners)
            or _folders_problem(path, owners))


@contextmanager
def opened_regular(path: Path, *, dir_fd: int | None = None,
                   follow: bool = False) -> Iterator[tuple[int, os.stat_result]]:
    """A descriptor on `path` and its fstat, for a file another user may have made: never through a link (its last
    part; `follow` for a path the caller gave by hand), never waiting on a FIFO, only a regular file (else OSError)."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    fd = os.open(path, flags, dir_fd=dir_fd)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a regular file (a pipe, a device or a folder)")
        yield fd, info
    finally:
        os.close(fd)


def read_to_limit(fd: int, limit: int = READ_LIMIT) -> bytes:
    """All of an open file, or OSError when it holds more than `limit` bytes (no policy or record is that big)."""
    chunks: list[bytes] = []
    size = 0
    while size <= limit and (chunk := os.read(fd, min(1 << 20, limit + 1 - size))):
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        raise _too_big(limit)
    return b"".join(chunks)


def read_regular(path: Path, limit: int = READ_LIMIT, *, follow: bool = False) -> bytes:
    """A regular file's content, read as opened_regular opens it (for files another user may own)."""
    with opened_regular(path, follow=follow) as (fd, info):
        if info.st_size > limit:  # said before reading a byte
            raise _too_big(limit)
        return read_to_limit(fd, limit)


def _too_big(limit: int) -> OSError:
    shown = f"{limit >> 20} MiB" if limit >= 1 << 20 else f"{limit >> 10} KiB"
    return OSError(errno.EFBIG, f"larger than {shown}, more than such a file ever holds")


def check_opened(path: Path, info: os.stat_result, what: str, *, also: int | None = None) -> None:
    """Raise UntrustedFile (exit 2) when the file actually opened (its fstat) is not trusted as untrusted() says:
    the path may have led elsewhere when it was checked."""
    distrust = _file_problem(path, info, False, _owners(also))
    if distrust is not None:
        raise UntrustedFile(what, distrust)


def changeable_by_others(info: os.stat_result) -> bool:
    """Whether users other than the owner (and root) may write to the file or folder, as the checks here count."""
    return bool(info.st_mode & _others(info, _OTHERS_WRITE))


def untrusted_state_dir(folder: Path) -> Distrust | None:
    """Why the state folder cannot be used: an existing one must be ours alone (a new one is made 0700)."""
    try:
        info = folder.stat()
        link = folder.lstat()
    except OSError:
        return _folders_problem(folder)
    made_by_another = _link_problem(folder, link, _owners())  # it decides which folder opsctl writes into
    if made_by_another is not None:
        return made_by_another
    if info.st_uid != os.geteuid():
        return Distrust(f"the folder {folder} is owned by {_user(info.st_uid)}, not by {_user(os.geteuid())}, "
                        "so that user can change opsctl's records and journal",
                        f"{_sudo()}chown -R {_user(os.geteuid())}: {_quoted(folder)} && chmod 700 {_quoted(folder)}")
    if info.st_mode & _others(info, _OTHERS_WRITE):
        return Distrust(f"the folder {folder} can be changed by other users (mode {_mode(info)})",
                        f"chmod 700 {_quoted(folder)}")  # the next run gives report_group its right to pass back
    return _folders_problem(folder)


def untrusted_state_dir_to_read(folder: Path, policy_owner: int) -> Distrust | None:
    """Why a read-only command may not read this state folder: it must be the policy owner's or root's, and
    changeable by nobody else. Your own only when the policy is yours or root's: another user's policy must not
    point you at your own records, where what runs would be yours."""
    owners = _state_readers(policy_owner)
    try:
        info = folder.stat()
        link = folder.lstat()
    except OSError:
        return _folders_problem(folder, _owners(policy_owner))
    made_by_another = _link_problem(folder, link, _owners(policy_owner))
    if made_by_another is not None:
        return made_by_another
    if info.st_uid not in owners:
        return Distrust(f"the folder {folder} is owned by {_user(info.st_uid)}, not by {_named(owners)} (the "
                        "policy file's owner or root), so it is not that policy's state",
                        f"{_sudo()}chown -R {_user(policy_owner)}: {_quoted(folder)} (or give the policy the "
                        "state_dir its owner uses)")
    if info.st_mode & _others(info, _OTHERS_WRITE):
        return Distrust(f"the folder {folder} can be changed by other users (mode {_mode(info)})",
                        f"chmod go-w {_quoted(folder)}")
    return _folders_problem(folder, _owners(policy_owner))


def is_anothers(folder: Path) -> bool:
    """True when the folder exists and belongs to another user: only a read-only command gets this far, and it
    writes nothing there."""
    try:
        return folder.stat().st_uid != os.geteuid()
    except OSError:
        return False


def check_trusted(path: Path, what: str, *, private: bool = False, also: int | None = None) -> None:
    """Raise UntrustedFile (exit 2) when another user could change or replace `path` (`also`: see untrusted)."""
    distrust = untrusted(path, private=private, also=also)
    if distrust is not None:
        raise UntrustedFile(what, distrust)


def check_state_dir(folder: Path) -> None:
    """Raise UntrustedFile (exit 2) when the state folder is not the user's own."""
    distrust = untrusted_state_dir(folder)
    if distrust is not None:
        raise UntrustedFile("the state_dir", distrust)


def check_state_dir_to_read(folder: Path, policy_owner: int) -> None:
    """Raise UntrustedFile (exit 2) when a read-only command may not read this state folder."""
    distrust = untrusted_state_dir_to_read(folder, policy_owner)
    if distrust is not None:
        raise UntrustedFile("the state_dir", distrust)


def chown_line(path: Path) -> str:
    """The command that gives `path` to the user running opsctl."""
    return f"{_sudo()}chown {_user(os.geteuid())}: {_quoted(path)}"


def _owners(also: int | None = None) -> frozenset[int]:
    """Whose files opsctl trusts: the user running it and root (and `also`, for a read-only command)."""
    return frozenset({os.geteuid(), 0} | ({also} if also is not None else set()))


def _state_readers(policy_owner: int) -> frozenset[int]:
    """Whose state folder a read-only command reads: the policy owner's or root's; the caller's own only when the
    policy is the caller's or root's."""
    if policy_owner in (os.geteuid(), 0):
        return frozenset({policy_owner, 0, os.geteuid()})
    return frozenset({policy_owner, 0}) - {os.geteuid()}


def _link_problem(path: Path, link: os.stat_result, owners: frozenset[int]) -> Distrust | None:
    """A link another user made (in /tmp, say) chooses which of root's files opsctl reads: refused too."""
    if stat.S_ISLNK(link.st_mode) and link.st_uid not in owners:
        return Distrust(f"{path} is a link made by {_user(link.st_uid)}, not by {_named(owners)}",
                        f"rm {_quoted(path)} (and give opsctl the file it points to)")
    return None


def _file_problem(path: Path, info: os.stat_result, private: bool, owners: frozenset[int]) -> Distrust | None:
    if info.st_uid not in owners:
        return Distrust(f"{path} is owned by {_user(info.st_uid)}, not by {_named(owners)}, "
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


def _folders_problem(path: Path, owners: frozenset[int] | None = None) -> Distrust | None:
    """The first folder above `path` (as given, and where its links lead) that others could change."""
    given = Path(os.path.abspath(path))
    real = Path(os.path.realpath(path))
    for folder in dict.fromkeys([*given.parents, *real.parents]):
        problem = _folder_problem(folder, path, owners or _owners())
        if problem is not None:
            return problem
    return None


def _folder_problem(folder: Path, path: Path, owners: frozenset[int]) -> Distrust | None:
    try:
        info = folder.stat()
    except OSError:
        return None  # not there yet (a state folder to be made): nothing to replace
    if info.st_uid not in owners:
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


def _named(owners: frozenset[int]) -> str:
    """Owners as a message names them: root; alice or root; alice, bob or root."""
    names = [_user(uid) for uid in sorted(owners - {0})] + (["root"] if 0 in owners else [])
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def _sudo() -> str:
    """Only root can give a file away; anyone else needs sudo for the fixing chown."""
    return "" if os.geteuid() == 0 else "sudo "


def _mode(info: os.stat_result) -> str:
    return f"{stat.S_IMODE(info.st_mode):o}"


def _quoted(path: Path) -> str:
    return shlex.quote(str(path))
