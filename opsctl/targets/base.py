"""What every storage target offers: a restic repository, raw access to its files, and a redacted name."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from opsctl.restic.repository import Repository

if TYPE_CHECKING:
    from opsctl.policy.model import TargetConfigBase
    from opsctl.targets.fleet import FleetFiles

# The folders of a restic repository, in the order a replica must receive them: a file is only
# copied once everything it refers to is there (packs, then the index, then snapshots, then keys).
REPLICATION_ORDER = ("data", "index", "snapshots", "keys")


def repository_folders() -> list[str]:
    """Every folder of restic's default layout (data has 256 subfolders)."""
    return ["keys", "locks", "snapshots", "index", *(f"data/{i:02x}" for i in range(256))]


class Access(Enum):
    """What a command does to a target's files; an S3 target picks its keys by it (least privilege)."""

    WRITE = "write"  # read and add files; delete only restic's own lock files
    DELETE = "delete"  # also delete any file of the repository (prune, key removal)
    # Reads only, and writes nothing anywhere, its own run record included (status --offline): such a command
    # may read another user's policy and state, as an auditor does.
    READ = "read"


@dataclass(frozen=True)
class Fact:
    """One line of a target's self-description for `opsctl doctor`: ok, or a problem with what to do."""

    check: str
    ok: bool
    detail: str
    hint: str | None = None


@dataclass(frozen=True)
class Immutability:
    """Whether the storage itself refuses to delete or change what a target holds, as it says now."""

    locked: bool
    detail: str  # one line for status and doctor, e.g. "object lock COMPLIANCE, 400 days"
    mode: str | None = None  # GOVERNANCE or COMPLIANCE
    days: int | None = None  # the bucket's default retention
    until: datetime | None = None  # when the newest snapshot's own lock ends (None: unknown or unlocked)
    hint: str | None = None  # what to do when the storage does not keep what the policy asks for
    known: bool = True  # False: the lock could not be read (no right, no answer): locked says nothing then


class RepositoryFiles(Protocol):
    """Raw access to a repository's files by restic's relative names (config, keys/ID, data/ab/ID)."""

    def list(self, folder: str) -> set[str]:
        """Relative names of the files under one top-level folder (data is flattened)."""

    def read(self, name: str) -> bytes:
        """A whole file; restic's files are small (packs are a few MiB)."""

    def write_new(self, name: str, content: bytes) -> bool:
        """Store a file atomically; never overwrite. False when it was already there."""

    def exists(self, name: str) -> bool:
        """True when the file is there."""

    def make_layout(self) -> None:
        """Create restic's folders where the storage has folders."""

    def clean_spool(self, older_than_s: float = 3600) -> None:
        """Remove half-written files of killed runs, where the storage needs a spool."""


class Target(Protocol):
    name: str
    kind: str
    offsite: bool

    @property
    def display(self) -> str:
        """A name for messages, reports and logs; never carries credentials."""

    def repository(self, password: bytes) -> Repository:
        """How restic opens this target's repository."""

    def probe(self) -> None:
        """Cheap reachability check (network, credentials, host key, mount); raises TargetUnreachable."""

    def prepare_init(self) -> None:
        """Check (and create what is needed) before a new repository is placed here."""

    def files(self) -> AbstractContextManager[RepositoryFiles]:
        """An open connection to the repository's files, for replication."""

    def facts(self) -> list[Fact]:
        """Kind-specific health facts for doctor (free space, host key, bucket versioning)."""

    def immutability(self, newest_snapshot_id: str | None) -> Immutability | None:
        """What the storage says about deleting this target's files now (None: storage without such a lock)."""

    def fleet(self) -> AbstractContextManager[FleetFiles]:
        """The fleet folder beside the repository (see targets/fleet.py), open until the context ends."""


ConfigT = TypeVar("ConfigT", bound="TargetConfigBase")


class ConfiguredTarget(Generic[ConfigT]):
    """What every target kind keeps from its policy entry."""

    kind = ""

    def __init__(self, config: ConfigT, stall_timeout_s: float = 300.0, access: Access = Access.WRITE) -> None:
        self.config = config
        self.name = config.name
        self.offsite = config.offsite
        self.stall_timeout_s = stall_timeout_s
        self.access = access

    def immutability(self, newest_snapshot_id: str | None) -> Immutability | None:  # noqa: ARG002 - S3's needs it
        """Folders and SFTP servers have no lock opsctl can read: None."""
        return None
