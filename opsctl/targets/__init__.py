"""Storage targets: one module per kind. Targets never import actions or the CLI."""

from __future__ import annotations

from opsctl.targets.base import Fact, RepositoryFiles, Target
from opsctl.targets.errors import DamagedFile, NotAReplica, TargetError, TargetFull, TargetUnreachable

__all__ = ["Fact", "RepositoryFiles", "Target", "target_for", "TargetError", "TargetFull", "TargetUnreachable",
           "NotAReplica", "DamagedFile"]


def target_for(config, stall_timeout_s: float = 300.0) -> Target:
    """The Target for one policy entry. Network kinds load their client library only when used."""
    if config.kind == "local":
        from opsctl.targets.local import LocalTarget
        return LocalTarget(config)
    if config.kind == "mount":
        from opsctl.targets.mount import MountTarget
        return MountTarget(config)
    if config.kind == "sftp":
        from opsctl.targets.sftp import SftpTarget
        return SftpTarget(config, stall_timeout_s)
    from opsctl.targets.s3 import S3Target
    return S3Target(config, stall_timeout_s)
