"""A repository in a folder on a local disk."""

from __future__ import annotations

from pathlib import Path

from opsctl.errors import BadInput
from opsctl.policy.model import LocalTarget as LocalTargetConfig
from opsctl.restic.repository import Repository


class LocalTarget:
    kind = "local"

    def __init__(self, config: LocalTargetConfig) -> None:
        self.name = config.name
        self.offsite = config.offsite
        self.path: Path = config.path

    @property
    def display(self) -> str:
        return f"{self.name} (local {self.path})"

    def repository(self, password: bytes) -> Repository:
        return Repository(location=str(self.path), display=self.display, password=password)

    def prepare_init(self) -> None:
        """A new repository goes into a missing or empty folder, never among someone else's files."""
        if self.path.exists() and not self.path.is_dir():
            raise BadInput(f"target {self.name}: {self.path} is a file, not a folder", "point targets.path at a folder")
        if self.path.is_dir() and any(self.path.iterdir()):
            raise BadInput(f"target {self.name}: {self.path} is not empty and holds no restic repository",
                           "point the target at an empty folder; opsctl will not write among other files")
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
