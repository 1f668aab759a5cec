"""What every storage target offers: a restic repository location and a redacted name."""

from __future__ import annotations

from typing import Protocol

from opsctl.restic.repository import Repository


class Target(Protocol):
    name: str
    kind: str
    offsite: bool

    @property
    def display(self) -> str:
        """A name for messages, reports and logs; never carries credentials."""

    def repository(self, password: bytes) -> Repository:
        """How restic opens this target's repository."""

    def prepare_init(self) -> None:
        """Check (and create what is needed) before a new repository is initialised here."""
