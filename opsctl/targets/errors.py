"""Target failures, phrased for the operator: what is wrong with which target, and what to do."""

from __future__ import annotations

from opsctl.errors import OpsctlError
from opsctl.restic.errors import MISSING_REPOSITORY_HINT, TargetUnreachable

__all__ = [
    "MISSING_REPOSITORY_HINT", "DamagedFile", "HostileTarget", "NotAReplica", "ReplicaChanged", "TargetError",
    "TargetFull", "TargetUnreachable", "hostile",
]

_SHOWN_LENGTH = 120  # a planted name may be long: enough to find it, not a screenful


class TargetError(OpsctlError):
    """A target cannot be used right now; the message names it by its redacted display name."""


class TargetFull(TargetError):
    pass


class NotAReplica(TargetError):
    """The target holds a repository with another identity than the primary's."""


class DamagedFile(TargetError):
    """A repository file's content does not match its content-addressed name."""


class ReplicaChanged(TargetError):
    """Files copied during this run disappeared from the target before the copy ended."""


class HostileTarget(TargetError):
    """A target holds what restic never makes (a symlink, a `..` name): someone may be tampering with it."""


def hostile(display: str, what: str, name: str) -> HostileTarget:
    """The one message for a tampered target: which target, what was found where; never a file's content."""
    return HostileTarget(
        f"{display} looks tampered with: it holds {what} at {shown(name)}, which restic never makes; "
        "opsctl wrote and deleted nothing through it",
        "someone who can write to that storage may be attacking it: find who made that entry and remove it, then "
        "run opsctl check on that target (or move its repository aside and run opsctl init to rebuild a replica)")


def shown(name: str) -> str:
    """A name the storage chose, made safe to print: no control characters (terminal escapes), not too long."""
    printable = "".join(c if c.isprintable() else "?" for c in name)
    return printable if len(printable) <= _SHOWN_LENGTH else printable[:_SHOWN_LENGTH] + "..."
