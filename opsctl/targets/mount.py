"""A repository on a NAS share mounted at a path (NFS, SMB): a local folder that must really be mounted."""

from __future__ import annotations

import os
from pathlib import Path

from opsctl.policy.model import MountTargetConfig
from opsctl.targets.base import Fact
from opsctl.targets.errors import TargetUnreachable
from opsctl.targets.fleet_local import LocalFleet
from opsctl.targets.local import LocalTarget


class MountTarget(LocalTarget[MountTargetConfig]):
    kind = "mount"

    def probe(self) -> None:
        self._require_mount()
        super().probe()

    def prepare_init(self) -> None:
        self._require_mount()
        super().prepare_init()

    def fleet(self) -> LocalFleet:
        """fleet/ beside the repository, which must be on the share too: else it would fill the local disk."""
        self._require_mount()
        mount, found = self._mount_point(), super().fleet()
        parent = self.path.parent
        if self.config.require_mountpoint and mount is not None and not parent.is_relative_to(mount):
            raise TargetUnreachable(
                f"{self.display}: the fleet folder {parent / 'fleet'} would not be on the share mounted at {mount}",
                f"keep the repository one folder below the mount point (e.g. {mount / self.path.name}), or publish "
                "to another target (fleet.publish_to)")
        return found

    def trusted_path(self) -> Path:
        """The share's mount point: below it the NAS decides what is a link, and none is followed."""
        return self._mount_point() or self.path

    def _require_mount(self) -> None:
        if self.config.require_mountpoint and self._mount_point() is None:
            raise TargetUnreachable(
                f"{self.display}: no share is mounted at or above {self.path}; writing there would fill the local disk",
                "mount the share (e.g. mount -a) and try again; set require_mountpoint: false only for a USB disk",
            )

    def facts(self) -> list[Fact]:
        mount = self._mount_point()
        found = Fact("mounted", mount is not None or not self.config.require_mountpoint,
                     f"mount point {mount}" if mount else "not on a mounted share",
                     None if mount else "mount the share before backups run")
        return [found, *super().facts()]

    def _mount_point(self) -> Path | None:
        """The nearest mount point at or above the target folder, other than the root filesystem."""
        path = self.path
        while not path.exists() and path != path.parent:
            path = path.parent
        for candidate in (path, *path.parents):
            if candidate == Path("/"):
                return None
            if os.path.ismount(candidate):
                return candidate
        return None
