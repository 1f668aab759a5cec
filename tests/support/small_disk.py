"""A small real filesystem (tmpfs) to fill up, and a real mount point for "mount" targets."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import tempfile
from pathlib import Path


class SmallDiskUnavailable(Exception):
    """tmpfs cannot be mounted here (not root, no password-less sudo, or a container without CAP_SYS_ADMIN)."""


def _as_root(*argv: str) -> list[str] | None:
    """argv run as root: directly as root, through password-less sudo otherwise, None if neither."""
    if os.geteuid() == 0:
        return list(argv)
    return ["sudo", "-n", *argv] if shutil.which("sudo") else None


class SmallDisk:
    """A tmpfs of size_mib MiB mounted on `path`, owned by the current user; a context manager."""

    def __init__(self, size_mib: int = 32) -> None:
        self.size_mib = size_mib
        self.path = Path(tempfile.mkdtemp(prefix="opsctl-test-disk-"))

    @property
    def mounted(self) -> bool:
        return os.path.ismount(self.path)

    def mount(self) -> SmallDisk:
        """Mount the tmpfs (again: it starts empty); raise SmallDiskUnavailable when impossible."""
        if self.mounted:
            return self
        options = f"size={self.size_mib}m,mode=0700,uid={os.getuid()},gid={os.getgid()}"
        argv = _as_root("mount", "-t", "tmpfs", "-o", options, "opsctl-test-disk", str(self.path))
        result = subprocess.run(argv, capture_output=True, text=True, check=False) if argv else None
        if result is None or result.returncode != 0:
            why = result.stderr.strip() if result else "not root and no sudo"
            raise SmallDiskUnavailable(f"cannot mount a {self.size_mib} MiB tmpfs for disk-full tests "
                                       f"(needs root or password-less sudo): {why}")
        return self

    def unmount(self) -> None:
        """Unmount: the folder stays, empty and on the parent filesystem (a "mount" target that is gone)."""
        if self.mounted:
            # lazy: a test's restic or open file must not keep the mount alive
            subprocess.run(_as_root("umount", "-l", str(self.path)), check=True, capture_output=True)

    def free_bytes(self) -> int:
        stats = os.statvfs(self.path)
        return stats.f_bavail * stats.f_frsize

    def fill(self, leave_bytes: int = 0) -> Path:
        """Write a file until only about leave_bytes are free (0: completely full); return it."""
        filler = self.path / "filler"
        block = b"\0" * (1 << 20)
        with open(filler, "wb", buffering=0) as out:
            while (room := self.free_bytes() - leave_bytes) > 0:
                try:
                    out.write(block[:room])
                except OSError as error:
                    if error.errno != errno.ENOSPC:
                        raise
                    break
        return filler

    def cleanup(self) -> None:
        self.unmount()
        shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self) -> SmallDisk:
        try:
            return self.mount()
        except BaseException:
            self.cleanup()
            raise

    def __exit__(self, *exc) -> None:
        self.cleanup()
