"""Target failures, phrased for the operator: what is wrong with which target, and what to do."""

from __future__ import annotations

from opsctl.errors import OpsctlError
from opsctl.restic.errors import MISSING_REPOSITORY_HINT, TargetUnreachable

__all__ = [
    "MISSING_REPOSITORY_HINT", "DamagedFile", "NotAReplica", "ReplicaChanged", "TargetError", "TargetFull",
    "TargetUnreachable",
]


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
