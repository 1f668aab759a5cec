"""Storage targets: one module per kind. Targets never import actions or the CLI."""

from __future__ import annotations

from opsctl.errors import NotSupportedYet
from opsctl.policy.model import LocalTarget as LocalTargetConfig
from opsctl.targets.base import Target
from opsctl.targets.local import LocalTarget

__all__ = ["Target", "target_for", "NotSupportedYet"]


def target_for(config) -> Target:
    """The Target for one policy entry; kinds not built yet are a clear error."""
    if isinstance(config, LocalTargetConfig):
        return LocalTarget(config)
    raise NotSupportedYet(
        f"target {config.name}: kind {config.kind} is accepted by the policy but not supported by this opsctl yet",
        "use kind: local for now; NAS (sftp, mount) and S3 targets come in a later release",
    )
