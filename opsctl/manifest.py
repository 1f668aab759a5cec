"""The manifest: what a snapshot holds, stored inside the same snapshot as the dump.

restic 0.14 can back up only one file from stdin, so the manifest travels as a trailer after
the dump bytes in that one file:

    <dump bytes> <MARKER> <manifest JSON> <8-byte big-endian length of MARKER+JSON> <MAGIC>

The trailer is written only after the dump tool has exited cleanly, so a snapshot without a
valid trailer is never taken for a good backup. The manifest describes data and never holds it:
no row contents, no sample values.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import queue
import re
import struct
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict, Unpack

from opsctl.errors import IntegrityError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

MARKER = b"\n\x00OPSCTL-MANIFEST\n"
MAGIC = b"OPSCTLM1"
_FOOTER = struct.Struct(">Q")
FOOTER_SIZE = _FOOTER.size + len(MAGIC)
MAX_TRAILER = 8 << 20  # the restore path holds this much back in memory while streaming
FORMAT_VERSION = 1


@dataclass(frozen=True)
class TableStats:
    name: str
    rows: int | None
    """None: the table could not be counted at the dump's moment (e.g. MyISAM dumped without a lock)."""
    fingerprint: str | None = None
    """Order-independent hash of the table's rows as a multiset (salted); None: not taken."""
    seconds: float | None = None
    """How long counting and fingerprinting the table took."""
    method: str | None = None
    """How the rows were hashed (engine-specific name); None: as opsctl did before it recorded methods."""
    rounded: int = 0
    """Rows holding a value the dump tool writes with fewer digits than stored (MariaDB FLOAT): no restore is exact."""
    widest_row: int = 0
    """Bytes of the table's largest row (MariaDB): its INSERT must fit the restore server's max_allowed_packet."""


CensusValue = int | str | None
"""A counter (e.g. a sequence: must not go back) or a value that must come back equal."""


@dataclass(frozen=True)
class Census:
    """What a database holds, read in one snapshot: tables with counts and fingerprints, schema objects, values."""

    tables: tuple[TableStats, ...]
    schema: dict[str, list[str]] = field(default_factory=dict)
    """Kind (e.g. "index") -> sorted names of the schema objects of that kind."""
    values: dict[str, CensusValue] = field(default_factory=dict)
    """Label (e.g. "sequence public.invoice") -> a value that must come back equal (never row contents)."""
    salt: str = ""
    """The salt of the row hashes; empty: no fingerprints were taken."""

    def methods(self) -> dict[str, str | None]:
        """Table -> how its fingerprint was taken, for the tables that have one: a restore hashes them the same way."""
        return {t.name: t.method for t in self.tables if t.fingerprint}


class DumpDescription(TypedDict):
    """What a source says about its dump besides the census (the keywords of DumpFacts.of)."""

    engine: str
    database: str
    dump_format: str
    server_version: str
    properties: NotRequired[dict[str, str]]
    warnings: NotRequired[tuple[str, ...]]


@dataclass(frozen=True)
class DumpFacts:
    """What the source knows about a dump: gathered at the same point in time as the dump."""

    engine: str
    database: str
    dump_format: str
    server_version: str
    tables: tuple[TableStats, ...]
    properties: dict[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    schema: dict[str, list[str]] = field(default_factory=dict)
    values: dict[str, CensusValue] = field(default_factory=dict)
    fingerprint_salt: str = ""

    @classmethod
    def of(cls, found: Census, **describe: Unpack[DumpDescription]) -> DumpFacts:
        """Facts from a census plus the dump's description (engine, database, format, ...)."""
        return cls(tables=found.tables, schema=found.schema, values=found.values, fingerprint_salt=found.salt,
                   **describe)

    @property
    def census(self) -> Census:
        """The fingerprints and inventory taken with the dump (salt empty: an older backup had none)."""
        return Census(tables=self.tables, schema=self.schema, values=self.values, salt=self.fingerprint_salt)

    @property
    def total_rows(self) -> int:
        """Rows in the counted tables."""
        return sum(t.rows for t in self.tables if t.rows is not None)


@dataclass(frozen=True)
class Manifest:
    policy: str
    opsctl_version: str
    started_at: str
    finished_at: str
    dump_bytes: int
    dump_sha256: str
    facts: DumpFacts
    format_version: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":")).encode()

    @property
    def sha256(self) -> str:
        """The manifest's own SHA-256: equal on every target that holds the same backup."""
        return hashlib.sha256(self.to_json()).hexdigest()

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        """Read a manifest; fields a newer opsctl added are left out, so its backups still restore here."""
        raw = json.loads(data)
        facts = raw.pop("facts")
        tables = tuple(TableStats(**_known(TableStats, t)) for t in facts.pop("tables"))
        warnings = tuple(facts.pop("warnings", ()))
        if not re.fullmatch(r"[0-9a-f]{0,64}", facts.get("fingerprint_salt", "")):
            raise ValueError("the fingerprint salt is not hex")  # it is written into SQL
        return cls(facts=DumpFacts(tables=tables, warnings=warnings, **_known(DumpFacts, facts)), **_known(cls, raw))


def _known(kind: type[DataclassInstance], fields: dict[str, Any]) -> dict[str, Any]:
    """The entries of `fields` that the dataclass `kind` has."""
    names = {f.name for f in dataclasses.fields(kind)}
    return {key: value for key, value in fields.items() if key in names}


def encode_trailer(manifest: Manifest) -> bytes:
    body = MARKER + manifest.to_json()
    if len(body) + FOOTER_SIZE > MAX_TRAILER:
        raise IntegrityError(f"the manifest is larger than {MAX_TRAILER} bytes; too many tables to describe")
    return body + _FOOTER.pack(len(body)) + MAGIC


class BackgroundSha256:
    """SHA-256 computed in a worker thread.

    hashlib releases the GIL on large buffers, so hashing overlaps with moving the bytes on to
    restic instead of adding to the pipeline's critical path. At most 8 chunks wait in the queue.
    """

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=8)
        self._worker = threading.Thread(target=self._run, daemon=True)
        self._worker.start()

    def _run(self) -> None:
        while (chunk := self._queue.get()) is not None:
            self._hash.update(chunk)

    def update(self, chunk: bytes) -> None:
        self._queue.put(chunk)

    def hexdigest(self) -> str:
        """Wait for every queued chunk, then give the digest; call once, at the end."""
        self._queue.put(None)
        self._worker.join()
        return self._hash.hexdigest()


class HashingStream:
    """Passes chunks through while counting and hashing them."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = chunks
        self.size = 0
        self._hash = BackgroundSha256()

    def __iter__(self) -> Iterator[bytes]:
        try:
            for chunk in self._chunks:
                self._hash.update(chunk)
                self.size += len(chunk)
                yield chunk
        except BaseException:
            self._hash.hexdigest()  # let the worker thread end; the digest is not used
            raise

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()


class TrailerSplitter:
    """Yields only the dump bytes of a stored file; afterwards `.manifest` holds its manifest.

    It holds back the last MAX_TRAILER bytes (the trailer may be in them) and, before releasing
    the final dump bytes, checks their size and SHA-256 against the manifest, so a consumer never
    receives all of a dump that does not match what was backed up.
    """

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = chunks
        self._hash = hashlib.sha256()
        self._sent = 0
        self.manifest: Manifest | None = None

    def __iter__(self) -> Iterator[bytes]:
        held: deque[bytes] = deque()
        held_size = 0
        for chunk in self._chunks:
            held.append(chunk)
            held_size += len(chunk)
            while held and held_size - len(held[0]) >= MAX_TRAILER:
                first = held.popleft()
                held_size -= len(first)
                yield self._send(first)
        tail = b"".join(held)
        manifest, dump_end = _parse_tail(tail)
        rest = tail[:dump_end]
        self._hash.update(rest)
        self._check(manifest, self._sent + len(rest))
        self.manifest = manifest
        if rest:
            yield rest

    def _send(self, chunk: bytes) -> bytes:
        self._hash.update(chunk)
        self._sent += len(chunk)
        return chunk

    def _check(self, manifest: Manifest, size: int) -> None:
        if size != manifest.dump_bytes or self._hash.hexdigest() != manifest.dump_sha256:
            raise IntegrityError(
                "the dump read back from the repository does not match its manifest "
                f"({size} bytes read, {manifest.dump_bytes} recorded)",
                "run restic check on this target; restore from another snapshot or target",
            )


def _parse_tail(tail: bytes) -> tuple[Manifest, int]:
    """The manifest at the end of a stored file and the offset where the dump ends."""
    if len(tail) < FOOTER_SIZE or not tail.endswith(MAGIC):
        raise IntegrityError(
            "this snapshot has no opsctl manifest: it was not completed by opsctl",
            "restore an earlier snapshot (opsctl snapshots lists them)",
        )
    (length,) = _FOOTER.unpack(tail[-FOOTER_SIZE:-len(MAGIC)])
    start = len(tail) - FOOTER_SIZE - length
    if start < 0 or tail[start:start + len(MARKER)] != MARKER:
        raise IntegrityError("this snapshot's opsctl manifest is damaged", "restore an earlier snapshot")
    try:
        manifest = Manifest.from_json(tail[start + len(MARKER):len(tail) - FOOTER_SIZE])
    except (ValueError, TypeError, KeyError, AttributeError):
        raise IntegrityError("this snapshot's opsctl manifest cannot be read", "restore an earlier snapshot") from None
    return manifest, start
