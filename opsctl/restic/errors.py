"""restic failures as typed errors, each with a hint an operator can act on at 3 a.m."""

from __future__ import annotations

import re

from opsctl.errors import ExitCode, OpsctlError


class ResticError(OpsctlError):
    """restic failed; the message names the repository by its redacted display name."""


class ResticMissing(ResticError):
    pass


class ResticTooOld(ResticError):
    pass


MISSING_REPOSITORY_HINT = ("if this target is new, run: opsctl init. If it held backups, they are gone or its disk "
                           "is not mounted: restore from another target, and find out why before running init")


class RepositoryNotFound(ResticError):
    pass


class RepositoryExists(ResticError):
    pass


class WrongPassword(ResticError):
    pass


class RepositoryLocked(ResticError):
    pass


class TargetUnreachable(ResticError):
    pass


class TargetStalled(TargetUnreachable):
    pass


class ResticTimeout(TargetUnreachable):
    """A quick look (status) that took longer than it may."""


class SnapshotNotFound(ResticError):
    exit_code = ExitCode.BAD_INPUT


_LOCKED = re.compile(
    r"already locked (?P<how>exclusively )?by PID (?P<pid>\d+) on (?P<host>\S+) by (?P<user>[^\n(]+?)\s*\(", re.DOTALL
)
_LOCK_TIME = re.compile(r"lock was created at (?P<at>[^\n]+)")
_UNREACHABLE = (
    "connection refused",
    "no such host",
    "i/o timeout",
    "network is unreachable",
    "connection reset",
    "ssh command exited",
    "unable to start the sftp session",
    "permission denied (publickey",
    "host key verification failed",
    "remote host identification has changed",
    "connection closed by remote host",
    "broken pipe",
    "no route to host",
    "dial tcp",
)


def classify(stderr: str, display: str, action: str) -> ResticError:  # noqa: PLR0911 - one return per error kind
    """Map restic's stderr to the most specific error we know, keeping its last line as detail."""
    text = stderr.strip()
    lowered = text.lower()
    if "wrong password or no key found" in lowered:
        return WrongPassword(
            f"the repository password does not open {display}",
            "check that the policy's repository_password is the one this repository was created with",
        )
    if locked := _LOCKED.search(text):
        return _locked_error(locked, text, display)
    if "is there a repository at the following location" in lowered:
        return RepositoryNotFound(f"there is no restic repository at {display}", MISSING_REPOSITORY_HINT)
    if "config file already exists" in lowered:
        return RepositoryExists(f"{display} already holds a restic repository; it was left untouched")
    if "no matching id found" in lowered or "no snapshot found" in lowered or "invalid id" in lowered:
        return SnapshotNotFound(
            f"that snapshot was not found in {display}", "list what exists with: opsctl snapshots"
        )
    if "no space left on device" in lowered or "disk quota exceeded" in lowered:
        return ResticError(f"{display} is full (no space left on device)",
                           "free space there, or move the repository to a bigger disk; "
                           "the other targets were not held up")
    if "access denied" in lowered:  # an S3 key that may not do this (restic names the call, e.g. RemoveObject)
        return ResticError(f"{display} refused this key: {_last_line(text)}",
                           f"the target's keys may not do what restic {action} needs; a command that deletes (prune, "
                           "keys rotate, init) uses the target's prune_credentials: see opsctl iam-policy "
                           "--target NAME --role prune")
    if any(marker in lowered for marker in _UNREACHABLE):
        return TargetUnreachable(f"{display} cannot be reached: {_last_line(text)}",
                                 "check the network and the target host")
    return ResticError(f"restic {action} failed for {display}: {_last_line(text) or 'no message'}")


def _locked_error(match: re.Match[str], text: str, display: str) -> RepositoryLocked:
    how = "exclusively " if match["how"] else ""
    since = _LOCK_TIME.search(text)
    when = f" since {since['at'].strip()}" if since else ""
    return RepositoryLocked(
        f"{display} is {how}locked by restic PID {match['pid']} on {match['host']} "
        f"(user {match['user'].strip()}){when}",
        "wait for that run to finish, or give it longer with the policy's lock_wait; "
        "locks left by runs that are gone are removed by opsctl itself",
    )


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].removeprefix("Fatal: ") if lines else ""
