"""Need-to-know in state_dir: the policy's report_group may read the status files, and nothing else there.

state_dir becomes 0710 with that group (members may pass through it, never list it) and `runs/`,
the run record `opsctl status --offline` reads, 2750 with that group: the set-group-ID bit gives
every record written there the folder's group, whoever writes it, and runs.py writes a record 0640
in a folder its group may read. Everything else in state_dir (the audit trail, key journals,
scratch copies, a password on its way) stays its owner's alone (0600, 0700), so passing through
reaches nothing more. Without report_group, state_dir goes back to 0700.

state_dir is opened once, and every check and change goes through that descriptor (runs/ and its
records are opened in it, never through a link): a link swapped meanwhile cannot steer the change
to another folder. Only a command that writes the state shares it; a reader never does.

A group that cannot be handed out (not on this host, or not one the running user may give) is a
warning, and what an earlier group had is taken back first: the status files are then private,
as the warning says, and the run goes on.
"""

from __future__ import annotations

import errno
import grp
import os
import pwd
import shlex
import stat
import struct
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from opsctl.policy.trust import changeable_by_others, is_callers_own

RUNS = "runs"  # the run record's folder in state_dir (runs.runs_dir)
STATE_DIR_MODE = 0o710
RUNS_MODE = 0o2750
RECORD_MODE = 0o640
_PRIVATE = 0o700
_PRIVATE_RECORD = 0o600
_OPEN_TO_OTHERS = 0o077 | stat.S_ISGID  # group or others may reach it, or new files take the folder's group
_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_ENTRY = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC  # a planted FIFO never blocks the run
_ACL = "system.posix_acl_access"
_ACL_GROUP, _ACL_MASK = 0x08, 0x10  # tags of a named group's entry and of the mask (linux/posix_acl_xattr.h)


class _NotShared(Exception):
    """state_dir, as opened, is not the caller's alone: nothing is changed in it."""


def share_state_dir(state_dir: Path, group: str | None, policy_file: Path) -> list[str]:
    """Give `group` its read access to the status files (making state_dir and runs/ when missing); without a
    group, take back what an earlier one had. Never raises: returns warnings (the group could not be given, or
    cannot reach the files)."""
    if group is None and not os.path.lexists(state_dir):
        return []  # nothing was ever given
    try:
        with _opened_state_dir(state_dir, create=group is not None) as fd:
            return _share(fd, state_dir, group, policy_file)
    except _NotShared as exc:
        return [str(exc)] if group is not None else []  # without a group, nothing given there to take back
    except OSError as exc:
        if group is None:
            return []
        planted = exc.errno in (errno.ELOOP, errno.ENOTDIR) and os.path.islink(state_dir)  # not followed
        why = "a link another user made" if planted else _why(exc)
        return [(f"cannot open the state_dir {state_dir} ({why}) to set who may read the status files: nothing was "
                 f"changed there. What to do: give the policy a state_dir that is a folder of {_me()}'s")]


def record_mode(runs: Path) -> int:
    """The mode of a new record: 0640 in a folder its group may read (shared), else 0600."""
    try:
        shared = runs.stat().st_mode & stat.S_IRGRP
    except OSError:
        shared = 0
    return RECORD_MODE if shared else _PRIVATE_RECORD


@contextmanager
def _opened_state_dir(state_dir: Path, *, create: bool) -> Iterator[int]:
    """state_dir opened once, and only when the caller owns it and others cannot change it (checked on the
    descriptor). A link is followed only when the caller made it: the operator's own choice of folder."""
    if create:
        state_dir.mkdir(parents=True, exist_ok=True, mode=_PRIVATE)
    fd = os.open(state_dir, _FOLDER & ~os.O_NOFOLLOW if _own_link(state_dir) else _FOLDER)
    try:
        info = os.fstat(fd)
        if info.st_uid != os.geteuid() or changeable_by_others(info):
            raise _NotShared(f"the state_dir {state_dir} changed while opsctl was setting who may read the status "
                             f"files (mode {stat.S_IMODE(info.st_mode):o}, owner {_name(info.st_uid)}): nothing was "
                             f"changed there. What to do: check {_quoted(state_dir)}, then run opsctl again")
        yield fd
    finally:
        os.close(fd)


def _own_link(path: Path) -> bool:
    try:
        link = path.lstat()
    except OSError:
        return False
    return stat.S_ISLNK(link.st_mode) and link.st_uid in (os.geteuid(), 0)  # as trust accepts: root's or ours


def _share(fd: int, state_dir: Path, group: str | None, policy_file: Path) -> list[str]:
    """What share_state_dir does, on state_dir's descriptor."""
    if group is None:
        return _withdraw(fd, state_dir, strict=False)
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        return _not_given(fd, state_dir, f"the policy's report_group {group} does not exist on this host",
                          f"create the group (groupadd {group}), or fix report_group in the policy")
    try:
        _give_all(fd, gid)
    except PermissionError:
        return _not_given(fd, state_dir, f"cannot give the status files to group {group} ({_me()} is not a member)",
                          f"run opsctl as root or as a member of {group}")
    except OSError as exc:
        return _not_given(fd, state_dir, f"cannot give the status files to group {group} ({_why(exc)})",
                          f"check {state_dir} and its {RUNS}/ folder")
    return _unreachable(state_dir, policy_file, group, gid)


def _give_all(fd: int, gid: int) -> None:
    """runs/ and its records to the group, then state_dir itself: the way in opens last."""
    with suppress(FileExistsError):
        os.mkdir(RUNS, _PRIVATE, dir_fd=fd)
    runs_fd = os.open(RUNS, _FOLDER, dir_fd=fd)  # a link there is refused (ELOOP): not a folder opsctl made
    try:
        _give(runs_fd, gid, RUNS_MODE)
        for name in _records(runs_fd):  # written before the policy named the group
            with _entry(runs_fd, name) as record:
                if record is not None:
                    _give(record, gid, RECORD_MODE)
    finally:
        os.close(runs_fd)
    _give(fd, gid, STATE_DIR_MODE)


def _give(fd: int, gid: int, mode: int) -> None:
    """Hand the open file or folder (only our own) to the group with `mode`; untouched when already so."""
    info = os.fstat(fd)
    if info.st_uid != os.geteuid() or not (stat.S_ISDIR(info.st_mode) or stat.S_ISREG(info.st_mode)):
        return
    if info.st_gid != gid:
        os.fchown(fd, -1, gid)
    if stat.S_IMODE(info.st_mode) != mode or info.st_gid != gid:  # a new group may drop the set-group-ID bit
        os.fchmod(fd, mode)


def _records(runs_fd: int) -> list[str]:
    return sorted(name for name in os.listdir(runs_fd) if name.endswith(".json"))


@contextmanager
def _entry(folder_fd: int, name: str, flags: int = _ENTRY) -> Iterator[int | None]:
    """A file in an open folder, never through a link; None when it is a link or gone."""
    try:
        fd = os.open(name, flags, dir_fd=folder_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOENT, errno.ENOTDIR):
            yield None  # a link is not a record opsctl wrote, and what it points to is not the group's
            return
        raise
    try:
        yield fd
    finally:
        os.close(fd)


def _not_given(fd: int, state_dir: Path, why: str, fix: str) -> list[str]:
    """Take back what an earlier group had, then say so: the warning says private only when it is so."""
    left = _withdraw(fd, state_dir, strict=True)
    now = f"are readable by {_me()} alone" if not left else "may still be readable by an earlier report_group"
    return [f"{why}: the status files {now}. What to do: {fix}", *left]


def _withdraw(fd: int, state_dir: Path, *, strict: bool) -> list[str]:
    """Back to the owner's alone (0700, 0600, the owner's own group), the way in first. Strictly: whatever the
    modes (the group named could not be given); else only from exactly the modes opsctl gives (0710, 2750, 0640):
    any other mode was set by hand and stays."""
    primary = _primary_gid()
    try:
        _take_back(fd, STATE_DIR_MODE, _PRIVATE, primary, strict)
        with _entry(fd, RUNS, _FOLDER) as runs_fd:
            if runs_fd is not None:
                _take_back(runs_fd, RUNS_MODE, _PRIVATE, primary, strict)
                for name in _records(runs_fd):
                    with _entry(runs_fd, name) as record:
                        if record is not None:
                            _take_back(record, RECORD_MODE, _PRIVATE_RECORD, primary, strict)
    except OSError as exc:
        runs = _quoted(state_dir / RUNS)
        return [(f"cannot make {state_dir} private again ({_why(exc)}): the former report_group may still read "
                 f"the status files. What to do: chmod 700 {_quoted(state_dir)} {runs} && chmod 600 {runs}/*.json")]
    return []


def _take_back(fd: int, shared: int, private: int, primary: int, strict: bool) -> None:
    """The open file or folder (only our own) back to `private` and the owner's own group."""
    info = os.fstat(fd)
    mode = stat.S_IMODE(info.st_mode)
    if info.st_uid != os.geteuid() or not (mode & _OPEN_TO_OTHERS if strict else mode == shared):
        return
    os.fchmod(fd, private)  # first: the group loses its access before the folder loses its group
    if info.st_gid != primary:
        os.fchown(fd, -1, primary)


def _unreachable(state_dir: Path, policy_file: Path, group: str, gid: int) -> list[str]:
    """What keeps the group from `status --offline`, which reads both: a folder on the way to state_dir or the
    policy that it cannot pass, or a policy file it cannot read."""
    closed = dict.fromkeys(folder for path in (state_dir, policy_file)
                           if not is_callers_own(path) and (folder := _closed_folder(path, gid)) is not None)
    # For the group alone: `chmod o+x` would let every user of the host pass.
    warnings = [f"members of {group} cannot pass through the folder {folder} to the status files or the policy. "
                f"What to do: setfacl -m g:{group}:x {_quoted(folder)} (to pass, not to list; or chgrp {group} "
                f"{_quoted(folder)} && chmod g+x {_quoted(folder)})" for folder in closed]
    if not is_callers_own(policy_file) and not _lets_in(policy_file, gid, stat.S_IROTH, stat.S_IRGRP):
        quoted = _quoted(policy_file)
        warnings.append(f"members of {group} cannot read the policy file {policy_file}, which opsctl status "
                        f"--offline reads. What to do: chgrp {group} {quoted} && chmod 640 {quoted}")
    return warnings


def _closed_folder(path: Path, gid: int) -> Path | None:
    """The first folder above `path` that members of the group cannot pass through."""
    for folder in reversed(Path(os.path.abspath(path)).parents):
        if not _lets_in(folder, gid, stat.S_IXOTH, stat.S_IXGRP):
            return folder
    return None


def _lets_in(path: Path, gid: int, others: int, group: int) -> bool:
    try:
        info = path.stat()
    except OSError:
        return True  # nothing to say about what is not there
    return (bool(info.st_mode & others) or (info.st_gid == gid and bool(info.st_mode & group))
            or _acl_lets_in(path, gid, group >> 3))


def _acl_lets_in(path: Path, gid: int, permission: int) -> bool:
    """Whether the file's access ACL gives the group `permission` (4 read, 1 execute): setfacl -m g:GROUP:x."""
    try:
        raw = os.getxattr(path, _ACL)
    except OSError:
        return False  # no ACL, or none this file system keeps
    entries = [struct.unpack_from("<HHI", raw, offset) for offset in range(4, len(raw) - 7, 8)]
    named = any(tag == _ACL_GROUP and who == gid and allowed & permission for tag, allowed, who in entries)
    mask = next((allowed for tag, allowed, _ in entries if tag == _ACL_MASK), permission)
    return named and bool(mask & permission)


def _primary_gid() -> int:
    """The group the owner's own files have: their primary group."""
    try:
        return pwd.getpwuid(os.geteuid()).pw_gid
    except KeyError:
        return os.getegid()


def _why(exc: OSError) -> str:
    return exc.strerror or exc.__class__.__name__


def _quoted(path: Path) -> str:
    return shlex.quote(str(path))


def _name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _me() -> str:
    return _name(os.geteuid())
