"""Storage targets: one module per kind. Targets never import actions or the CLI."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from opsctl.errors import NotSupportedYet
from opsctl.targets.base import Access, Fact, Immutability, RepositoryFiles, Target
from opsctl.targets.errors import DamagedFile, NotAReplica, TargetError, TargetFull, TargetUnreachable

__all__ = [
    "Access",
    "DamagedFile",
    "Fact",
    "Immutability",
    "NotAReplica",
    "RepositoryFiles",
    "Target",
    "TargetError",
    "TargetFull",
    "TargetUnreachable",
    "target_for",
]

# Each loader imports its module only when called: network kinds load their client library
# (paramiko, boto3) only when a policy uses them.
Loader = Callable[[Any, float, Access], Target]


def _local(config: Any, stall_timeout_s: float, _access: Access) -> Target:
    from opsctl.targets.local import LocalTarget
    return LocalTarget(config, stall_timeout_s)  # a folder has no separate keys to choose from


def _mount(config: Any, stall_timeout_s: float, _access: Access) -> Target:
    from opsctl.targets.mount import MountTarget
    return MountTarget(config, stall_timeout_s)


def _sftp(config: Any, stall_timeout_s: float, access: Access) -> Target:
    from opsctl.targets.sftp import SftpTarget
    return SftpTarget(config, stall_timeout_s, access)


def _s3(config: Any, stall_timeout_s: float, access: Access) -> Target:
    from opsctl.targets.s3 import S3Target
    return S3Target(config, stall_timeout_s, access)


LOADERS: dict[str, Loader] = {"local": _local, "mount": _mount, "sftp": _sftp, "s3": _s3}


def target_for(config: Any, stall_timeout_s: float = 300.0, access: Access = Access.WRITE) -> Target:
    """The Target for one policy entry (a *TargetConfig), for a command that needs `access` to its files.

    An unknown kind raises NotSupportedYet.
    """
    loader = LOADERS.get(config.kind)
    if loader is None:
        raise NotSupportedYet(
            f"target kind '{config.kind}' is not supported; known kinds: {', '.join(sorted(LOADERS))}",
            "use one of the known kinds in the policy's targets",
        )
    return loader(config, stall_timeout_s, access)
