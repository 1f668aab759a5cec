"""What every database engine offers the actions: a consistent dump and a safe restore."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from opsctl.manifest import Census, DumpFacts, TableStats

SERVER_VERSION = "server-version"
"""The dump property (and snapshot tag) naming the version of the server the dump came from."""


class Dump(Protocol):
    """A running dump. `facts` is set once `chunks()` has ended without error."""

    facts: DumpFacts | None
    properties: dict[str, str]
    """Database-level settings a restore needs before it starts (e.g. pg-encoding); stored as tags."""

    def chunks(self) -> Iterator[bytes]:
        """The dump's bytes; raises DumpFailed at the end if the dump tool did not succeed."""


@dataclass(frozen=True)
class Destination:
    """Where a restore would land, as found before anything is written."""

    name: str
    display: str
    exists: bool
    empty: bool
    is_source: bool


@dataclass(frozen=True)
class StandbyState:
    """A read-only standby copy as found on the recovery server."""

    exists: bool
    read_only: bool
    readers: tuple[str, ...]  # who may read it, as the server says (roles, accounts, or a file's group)
    size_bytes: int | None


class Source(Protocol):
    engine: str
    database: str
    file_name: str

    @property
    def where(self) -> str:
        """The server (SQLite: the folder) this source restores to, for messages: postgresql://user@host:port."""

    def probe(self) -> str:
        """Check the database answers with these credentials; return a one-line description."""

    def dump(self) -> AbstractContextManager[Dump]:
        """Start a dump from one consistent point in time."""

    def exists(self, name: str) -> bool:
        """Whether a database (SQLite: a file) of that name exists; looks without opening it."""

    def destination(self, name: str) -> Destination:
        """Look at a restore destination without changing it."""

    def restore_name(self, suffix: str) -> str:
        """A new destination name beside the source, e.g. crm_restored_20261120_0300 (SQLite: a file beside it)."""

    def create_staging(self, destination: Destination, properties: dict[str, str]) -> str:
        """Make an empty scratch place next to the destination, with the dump's properties; return its name."""

    def load(self, staging: str, chunks: Iterable[bytes]) -> None:
        """Restore a dump stream into the staging place."""

    def row_counts(self, staging: str) -> tuple[TableStats, ...]:
        """Row counts of every table in the staging place."""

    def census(self, staging: str, expected: DumpFacts) -> Census:
        """Fingerprints and schema inventory of the staging place, each table hashed as the backup (`expected`) did."""

    def publish(self, staging: str, destination: Destination) -> str | None:
        """Put staging at the destination; an existing non-empty one is renamed aside (returned)."""

    def discard(self, staging: str) -> None:
        """Remove the staging place after a failed restore."""

    def scratch_left_behind(self) -> list[str]:
        """Staging and scratch places opsctl marked whose run is provably gone (killed); `discard` removes them."""

    def check_restorable(self, properties: dict[str, str]) -> None:
        """Refuse (DestinationRefused) a snapshot with these properties that this server cannot take: an older engine
        than the one the dump came from, or another flavour. A snapshot without a server version is not checked."""

    def free_bytes(self) -> int | None:
        """Free space where this server keeps its data; None when that cannot be known (a server elsewhere)."""

    def swap_standby(self, staging: str, name: str, readers: tuple[str, ...]) -> str | None:
        """Make the verified staging copy read-only with SELECT for `readers` only, then put it at `name` in one
        atomic step; drop the copy it replaced; return the replaced copy's name while it existed (None for a first
        standby)."""

    def standby_state(self, name: str) -> StandbyState | None:
        """The standby at `name` as the server shows it; None when there is none."""
