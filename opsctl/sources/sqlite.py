"""SQLite: an online copy through SQLite's backup API, streamed to restic; restore to a new file."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from opsctl.leftovers import remote_scratch, remove_remote_scratch, scratch_folder
from opsctl.manifest import Census, DumpFacts, TableStats
from opsctl.process import read_chunks
from opsctl.sources import census, sqlite_standby
from opsctl.sources.base import SERVER_VERSION, Destination, StandbyState
from opsctl.sources.compat import free_bytes_at
from opsctl.sources.errors import DatabaseMissing, DestinationRefused, DumpFailed, RestoreFailed, database_error_text
from opsctl.sources.sqlite_publish import publish_file, remove_with_sidecars

DUMP_FORMAT = "SQLite database file (online backup API copy)"


def _open(path: Path, private: bool = False, *, shared: bool = False) -> sqlite3.Connection:
    """Read-only: opening never creates a missing file or changes an existing one.

    A private file (our own copy, nobody else writes it) is opened immutable, so SQLite does
    not leave -wal/-shm files next to it.
    """
    flags = "mode=ro&immutable=1" if private else "mode=ro"
    return sqlite3.connect(f"{path.resolve().as_uri()}?{flags}", uri=True, timeout=30, check_same_thread=not shared)


def row_counts(conn: sqlite3.Connection) -> tuple[TableStats, ...]:
    return tuple(TableStats(name=name, rows=_count(conn, name)) for name in _table_names(conn))


def _count(conn: sqlite3.Connection, name: str) -> int | None:
    """A table's rows; None for a virtual table whose module (an extension) this Python lacks."""
    try:
        rows: int = conn.execute(f"SELECT count(*) FROM {_quote(name)}").fetchone()[0]
    except sqlite3.OperationalError as exc:
        if not _module_missing(exc):
            raise
        return None
    return rows


def _module_missing(exc: sqlite3.OperationalError) -> bool:
    return "no such module" in str(exc)


def take_census(conn: sqlite3.Connection, salt: str) -> Census:
    """Counts and fingerprints of every table (hashed here, row by row), the schema inventory and sequences."""
    if not salt:
        return census.counts_only(row_counts(conn))
    # SQLite's TEXT may hold bytes that are not UTF-8: keep them, byte for byte, instead of failing.
    conn.text_factory = lambda raw: raw.decode("utf-8", "surrogateescape")
    tables = tuple(_fingerprint(conn, name, salt) for name in _table_names(conn))
    found: dict[str, list[str]] = {}
    for kind, name in conn.execute("SELECT type, name FROM sqlite_schema "
                                   "WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY type, name"):
        found.setdefault(kind, []).append(name)
    has_sequences = conn.execute("SELECT 1 FROM sqlite_schema WHERE name = 'sqlite_sequence'").fetchone()
    sequences = conn.execute("SELECT name, seq FROM sqlite_sequence") if has_sequences else ()
    values: dict[str, int | str | None] = {f"sequence {name}": seq for name, seq in sequences}
    return Census(tables=tables, schema=found, values=values, salt=salt)


def _table_names(conn: sqlite3.Connection) -> list[str]:
    return [row[0] for row in conn.execute(
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name")]


def _fingerprint(conn: sqlite3.Connection, name: str, salt: str) -> TableStats:
    rows, hash_sum, prefix, started = 0, 0, salt.encode(), time.monotonic()
    try:
        for row in conn.execute(f"SELECT * FROM {_quote(name)}"):
            digest = hashlib.md5(prefix + b"".join(_encode(value) for value in row), usedforsecurity=False).digest()
            hash_sum += int.from_bytes(digest[:8], "big")
            rows += 1
    except sqlite3.OperationalError as exc:
        if not _module_missing(exc):
            raise
        return TableStats(name=name, rows=None)  # its rows live in its shadow tables, which are fingerprinted
    return census.table(name, salt, census.TableHash(rows, hash_sum, None), started)


def _encode(value: int | float | str | bytes | None) -> bytes:
    """A value with its type and length, so NULL, '' and 0 (and any split between columns) differ."""
    if value is None:
        return b"N;"
    if isinstance(value, bytes):
        body, kind = value, b"b"
    else:
        body, kind = (repr(value) if isinstance(value, float) else str(value)).encode("utf-8", "surrogateescape"), \
            {int: b"i", float: b"f"}.get(type(value), b"s")
    return kind + str(len(body)).encode() + b":" + body


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


class SQLiteSource:
    """One SQLite database file."""

    engine = "sqlite"

    def __init__(self, path: Path, database: str, scratch_dir: Path | None = None, *, recovery: bool = False) -> None:
        """`recovery`: path is where restores land in a recovery folder (no file there is the policy's own)."""
        self.path = path
        self.database = database
        self.file_name = f"{database}.sqlite3"
        self._scratch_dir = scratch_dir
        self._recovery = recovery

    @property
    def where(self) -> str:
        return f"folder {self.path.parent}"

    def probe(self) -> str:
        """Open the file read-only and read its schema; raises a clear error when that fails."""
        if not self.path.is_file():
            raise DatabaseMissing(f"the SQLite database {self.path} does not exist",
                                  "check database.path in the policy")
        try:
            with closing(_open(self.path)) as conn:
                tables = conn.execute("SELECT count(*) FROM sqlite_schema WHERE type = 'table'").fetchone()[0]
        except sqlite3.Error as exc:
            raise DatabaseMissing(f"the SQLite database {self.path} cannot be read: {database_error_text(exc)}",
                                  "check the file and its permissions") from None
        return f"{self.path} opens ({tables} tables, SQLite {sqlite3.sqlite_version})"

    @contextmanager
    def dump(self) -> Iterator[SQLiteDump]:
        """Copy the live database to a private scratch file in one read transaction, then stream it."""
        if not self.path.is_file():
            raise DatabaseMissing(f"the SQLite database {self.path} does not exist",
                                  "check database.path in the policy")
        with scratch_folder("sqlite", self._scratch_dir) as folder:
            copy = folder / self.file_name
            try:
                with closing(_open(self.path)) as src, closing(sqlite3.connect(copy)) as dst:
                    src.backup(dst)  # all pages in one step: one consistent read transaction
            except sqlite3.Error as exc:
                raise DumpFailed(f"copying the SQLite database {self.path} failed: {database_error_text(exc)}",
                                 "no snapshot was kept from this run") from None
            census_taker = _CensusOfCopy(copy, self.path)
            try:
                yield SQLiteDump(copy, self.database, census_taker)
            finally:
                census_taker.stop()

    def exists(self, name: str) -> bool:
        return Path(name).expanduser().exists()

    def destination(self, name: str) -> Destination:
        path = Path(name).expanduser().resolve()
        exists = path.exists()
        if exists and not path.is_file():
            raise DestinationRefused(f"{path} exists and is not a file",
                                     "give --to a file path for the restored database")
        is_source = not self._recovery and (
            path == self.path.resolve() or (exists and self.path.exists() and path.samefile(self.path)))
        return Destination(name=str(path), display=f"file {path}", exists=exists,
                           empty=not exists or _is_empty(path), is_source=is_source)

    def restore_name(self, suffix: str) -> str:
        return str(self.path.with_name(f"{self.path.stem}.{suffix}{self.path.suffix or '.sqlite3'}"))

    def create_staging(self, destination: Destination,
                       properties: dict[str, str]) -> str:  # noqa: ARG002 - Source protocol; a file has none
        target = Path(destination.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        # Beside the destination (the same filesystem, for the final link) in a marked folder: after a kill,
        # the next run finds it through its pointer in the scratch folder and removes it.
        staging = remote_scratch("restore", target.parent, self._registry) / target.name
        os.close(os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        return str(staging)

    def load(self, staging: str, chunks: Iterable[bytes]) -> None:
        with open(staging, "wb") as handle:
            handle.writelines(chunks)
            handle.flush()
            os.fsync(handle.fileno())

    def row_counts(self, staging: str) -> tuple[TableStats, ...]:
        try:
            with closing(_open(Path(staging), private=True)) as conn:
                problems = conn.execute("PRAGMA quick_check").fetchall()
                if problems != [("ok",)]:
                    raise RestoreFailed("the restored SQLite file fails SQLite's integrity check",
                                        "restore an earlier snapshot; this one may be damaged")
                return row_counts(conn)
        except sqlite3.DatabaseError as exc:
            raise RestoreFailed(f"the restored SQLite file cannot be opened: {database_error_text(exc)}") from None

    def census(self, staging: str, expected: DumpFacts) -> Census:
        """Fingerprints and inventory of a restored file (after SQLite's own integrity check)."""
        self.row_counts(staging)
        with closing(_open(Path(staging), private=True)) as conn:
            return take_census(conn, expected.fingerprint_salt)

    def publish(self, staging: str, destination: Destination) -> str | None:
        """Move staging into place; an existing file (with its -wal/-journal) is renamed aside, never deleted."""
        aside = publish_file(Path(staging), Path(destination.name), owner_like=self.path)
        remove_remote_scratch(Path(staging).parent, self._registry)
        return None if aside is None else str(aside)

    def check_restorable(self, properties: dict[str, str]) -> None:
        """Any SQLite reads any SQLite 3 file: nothing to check."""

    def free_bytes(self) -> int | None:
        """Free space in the folder restores land in (or the nearest folder above it that exists)."""
        return free_bytes_at(self.path.parent)

    def swap_standby(self, staging: str, name: str, readers: tuple[str, ...]) -> str | None:
        """See opsctl/sources/sqlite_standby.py; `readers` is at most one group, `name` the standby's path."""
        replaced = sqlite_standby.swap(Path(staging), Path(name).expanduser().resolve(), readers)
        remove_remote_scratch(Path(staging).parent, self._registry)
        return replaced

    def standby_state(self, name: str) -> StandbyState | None:
        return sqlite_standby.state(Path(name).expanduser())

    def discard(self, staging: str) -> None:
        remove_with_sidecars(Path(staging))
        remove_remote_scratch(Path(staging).parent, self._registry)

    @property
    def _registry(self) -> Path:
        return self._scratch_dir or Path(tempfile.gettempdir())

    def scratch_left_behind(self) -> list[str]:
        """None by name: SQLite's scratch copies live in marked scratch folders, which every run sweeps."""
        return []


class _CensusOfCopy:
    """The copy's counts and fingerprints, read on a thread while the copy streams to restic (a private file)."""

    def __init__(self, copy: Path, original: Path) -> None:
        self._original = original  # named in errors: the copy is only opsctl's scratch file
        try:
            # Opened here, read on the thread, stopped and closed from here once the thread is done.
            self._conn = _open(copy, private=True, shared=True)
        except sqlite3.Error as exc:
            raise self._failed(database_error_text(exc)) from None
        self._stopping = threading.Event()
        # SQLite asks every 10,000 steps whether to go on: a census is stopped between rows and between tables.
        self._conn.set_progress_handler(self._stopping.is_set, 10_000)
        self._found: Census | Exception | None = None
        self._thread = threading.Thread(target=self._take, name="sqlite-census", daemon=True)
        self._thread.start()

    def _take(self) -> None:
        try:
            self._found = take_census(self._conn, census.new_salt())
        except Exception as exc:  # noqa: BLE001 - told by result(), on the streaming thread
            self._found = exc

    def result(self) -> Census:
        """The census, once taken; any failure of it is a failed dump (no snapshot is kept)."""
        self._thread.join()
        if isinstance(self._found, Census):
            return self._found
        found = self._found
        raise self._failed(database_error_text(found) if isinstance(found, sqlite3.Error)
                           else f"the census failed ({type(found).__name__})")

    def _failed(self, why: str) -> DumpFailed:
        return DumpFailed(f"reading the SQLite database {self._original} failed: {why}",
                          "no snapshot was kept from this run")

    def stop(self) -> None:
        """Cut a census short (the stream failed) and close the copy, so its folder can go."""
        self._stopping.set()
        self._thread.join(timeout=30)
        self._conn.close()


class SQLiteDump:
    def __init__(self, copy: Path, database: str, census_taker: _CensusOfCopy) -> None:
        # The file carries its own encoding and settings; the library's version is told, not checked.
        self.properties: dict[str, str] = {SERVER_VERSION: sqlite3.sqlite_version}
        self._copy, self._database = copy, database
        self._census = census_taker
        self.facts: DumpFacts | None = None

    def chunks(self) -> Iterator[bytes]:
        with open(self._copy, "rb") as handle:
            yield from read_chunks(handle)
        self.facts = DumpFacts.of(self._census.result(), engine="sqlite", database=self._database,
                                  dump_format=DUMP_FORMAT, server_version=sqlite3.sqlite_version)


def _is_empty(path: Path) -> bool:
    if path.stat().st_size == 0:
        return True
    try:
        with closing(_open(path)) as conn:
            objects: int = conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0]
            return objects == 0
    except sqlite3.DatabaseError:
        return False  # not a database we can read: never treat it as empty
