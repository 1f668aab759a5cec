"""The fleet folder: `fleet/<policy>/<host>.json` beside a target's repository, one status document per host.

It lies in the repository's parent folder (for S3, the parent of the prefix), so hosts whose
repositories sit side by side in one bucket or NAS folder share it, and `opsctl fleet status` reads
them all. The storage may be hostile: opsctl writes and reads only names of that form, follows no
link there, reads each file only up to MAX_DOCUMENT, and counts (never reads) anything else. What the
kinds of storage share is here; fleet_local, fleet_sftp and fleet_s3 walk their own.
"""

from __future__ import annotations

import posixpath
import re
import secrets
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from opsctl.policy import fleet as section
from opsctl.policy.fields import NAME_PATTERN
from opsctl.targets.errors import TargetError, shown

T = TypeVar("T")
FOLDER = section.FOLDER  # named where the policy checks that no repository is such a folder
SUFFIX = ".json"
MAX_DOCUMENT = 1 << 20  # a status document is a few KiB; a larger file is not one, and is not read
MAX_ENTRIES = 10_000  # documents in all, and entries in any one folder: more than any fleet holds
MAX_LISTED = 10 * MAX_ENTRIES  # entries of every folder together: a walk of a flooded storage ends
# Readable by other accounts on the storage (an auditor's): a status document holds nothing secret.
FOLDER_MODE, FILE_MODE = 0o755, 0o644
STALE_SPOOL_S = 3600  # a half-written copy older than this was left by a killed run, never a live one's
TAMPERED = ("someone who can write to that storage may be tampering with it: find who made that entry and remove it; "
            "the next job publishes again")
_NAME = re.compile(NAME_PATTERN)
_SPOOLED = re.compile(r"\.(.+)\.json\.[0-9a-f]{8}\.tmp")


class RefusedDocument(TargetError):
    """A fleet file opsctl will not read or replace (a link, a folder, too large): the message says which."""


@dataclass(frozen=True)
class Listing:
    """What a fleet folder holds: each document's (policy, host), and what was passed over."""

    documents: tuple[tuple[str, str], ...] = ()
    ignored: int = 0  # names opsctl never writes there, or a non-folder where a policy's folder belongs: never read
    interrupted: int = 0  # half-written copies of a publish killed mid-way (.<host>.json.<8 hex>.tmp)
    cut: tuple[str, ...] = ()  # folders listed only in part (more entries than MAX_ENTRIES): a host may be missing


class FleetReader(Protocol):
    """Reads documents of one fleet folder."""

    def read(self, policy: str, host: str) -> bytes:
        """One document, at most MAX_DOCUMENT bytes; RefusedDocument for a link, a folder or a larger file."""


class FleetFiles(FleetReader, Protocol):
    """One target's fleet folder, open until its context ends."""

    display: str  # where it is, without credentials

    def publish(self, policy: str, host: str, content: bytes) -> None:
        """Replace <policy>/<host>.json whole: a reader sees the old document or the new one."""

    def listing(self) -> Listing:
        """Every <policy>/<host>.json, by its names; other entries are counted, never read."""

    def reader(self) -> AbstractContextManager[FleetReader]:
        """A reader for one more thread beside the others (SFTP: over a channel of its own)."""


def is_name(name: str) -> bool:
    """A policy's or a host's name as the policy allows it: nothing else is written or read in the fleet folder."""
    return _NAME.fullmatch(name) is not None


def host_of(file_name: str) -> str | None:
    """The host a document's file name stands for (`crm-eu-1.json` -> crm-eu-1); None for any other name."""
    host = file_name.removesuffix(SUFFIX)
    return host if file_name.endswith(SUFFIX) and is_name(host) else None


def file_name(policy: str, host: str) -> str:
    """<host>.json, after checking both names (callers pass the policy's own: anything else is a bug)."""
    for name in (policy, host):
        if not is_name(name):
            raise TargetError(f"opsctl refused to use {shown(name)} in a fleet folder: not a policy or host name",
                              "nothing was written; this is a bug in opsctl, please report it")
    return host + SUFFIX


def spool_name(name: str) -> str:
    """Where a document is written aside before it is renamed over `name`: a dot name of its own."""
    return f".{name}.{secrets.token_hex(4)}.tmp"


def is_spooled(entry: str, host: str | None = None) -> bool:
    """A half-written copy of a document (of `host`'s, when given), as spool_name makes them."""
    found = _SPOOLED.fullmatch(entry)
    return found is not None and is_name(found[1]) and host in (None, found[1])


def left_by_killed_run(entry: str, name: str, age_s: float) -> bool:
    """This host's own half-written copy of `name` that no live run is writing any more."""
    return is_spooled(entry, name.removesuffix(SUFFIX)) and age_s > STALE_SPOOL_S


def too_big(where: str) -> RefusedDocument:
    return RefusedDocument(f"{shown(where)} is larger than {MAX_DOCUMENT >> 20} MiB, far more than a status "
                           "document: not read", TAMPERED)


def not_a_document(where: str, link: bool) -> RefusedDocument:
    if link:
        return RefusedDocument(f"{shown(where)} is a symbolic link, not a document; opsctl follows no link in a "
                               "fleet folder", TAMPERED)
    return RefusedDocument(f"{shown(where)} is a folder, pipe or device, not a document: not read", TAMPERED)


def not_a_folder(display: str, where: str) -> RefusedDocument:
    return RefusedDocument(f"{display}: {shown(where)} is a symbolic link or a file, not a folder; opsctl follows no "
                           "link in a fleet folder, and wrote nothing through it", TAMPERED)


def local_folder(repository: Path) -> Path:
    """The fleet folder of a repository in a folder: beside it, in its parent."""
    return repository.parent / FOLDER


def sftp_folder(repository: str) -> str:
    """The fleet folder of a repository on an SFTP server (an absolute POSIX path)."""
    return posixpath.join(posixpath.dirname(repository.rstrip("/")) or "/", FOLDER)


def s3_folder(prefix: str) -> str:
    """The fleet folder's key prefix (without the final /) for a repository under `prefix`: crm/eu -> crm/fleet,
    eu or no prefix -> fleet at the bucket's root."""
    parent = posixpath.dirname(prefix.strip("/"))
    return f"{parent}/{FOLDER}" if parent else FOLDER


class Tally:
    """A Listing, built while a target walks its fleet folder. Each folder is listed on its own budget, so a folder
    flooded with junk cuts only itself (named in Listing.cut) and cannot push another policy's documents out."""

    def __init__(self, spools: bool = True) -> None:
        self._spools = spools  # whether this storage writes aside (S3 puts a document whole)
        self._documents: list[tuple[str, str]] = []
        self._ignored = self._interrupted = self._listed = 0
        self._cut: list[str] = []

    def entries(self, where: str, listed: Iterable[T]) -> Iterator[T]:
        """A folder's entries (`where`, e.g. fleet/crm-eu/), as long as the budgets last; a folder that had more is
        named in the listing's cut."""
        for count, entry in enumerate(listed):
            if count >= MAX_ENTRIES or self._listed >= MAX_LISTED or len(self._documents) >= MAX_ENTRIES:
                self._cut.append(where)
                return
            self._listed += 1
            yield entry

    def policy_folder(self, name: str, folder: bool) -> bool:
        """Whether to look into this entry of the fleet folder: a folder with a policy's name (else counted)."""
        if folder and is_name(name):
            return True
        self._ignored += 1
        return False

    def document(self, policy: str, name: str, folder: bool = False) -> None:
        """An entry of a policy's folder: a document by its name (reading it says what is wrong), a killed publish's
        leftover, or anything else (counted); `folder`: keys below that name (S3), never a document."""
        host = None if folder else host_of(name)
        if host is not None:
            self._documents.append((policy, host))
        elif self._spools and not folder and is_spooled(name):
            self._interrupted += 1
        else:
            self._ignored += 1

    def passed_over(self) -> None:
        """A policy's folder that vanished, or became a link, while the fleet was listed."""
        self._ignored += 1

    def listing(self) -> Listing:
        return Listing(tuple(sorted(self._documents)), self._ignored, self._interrupted, tuple(self._cut))
