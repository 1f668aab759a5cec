"""PostgreSQL: pg_dump from an exported snapshot, pg_restore into a staging database."""

from __future__ import annotations

import logging
import secrets
import subprocess
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from opsctl.leftovers import left_behind_database, me, staging_name
from opsctl.manifest import Census, DumpFacts, TableStats
from opsctl.process import die_with_parent, stop
from opsctl.sources import census, pg_standby
from opsctl.sources.base import SERVER_VERSION, Destination, StandbyState
from opsctl.sources.compat import check_pg, free_bytes_of_server, is_local, pg_version_text
from opsctl.sources.counted_dump import CountedDump
from opsctl.sources.errors import (
    DatabaseAuthFailed,
    DatabaseError,
    DatabaseMissing,
    DestinationRefused,
    RestoreFailed,
    database_error_text,
)
from opsctl.sources.pg_census import sequence_values, take_census
from opsctl.sources.pg_client import (
    PgServer,
    create_database_sql,
    database_properties,
    first_row,
    has_user_relations,
    row_counts,
    tool,
)
from opsctl.sources.pg_standby import DROP_FORCE_SINCE
from opsctl.sources.restore_tool import run_restore_tool

log = logging.getLogger(__name__)
DUMP_FORMAT = "pg_dump custom format, uncompressed (-Fc -Z0)"
_MAINTENANCE_DATABASES = ("postgres", "template1")


class PostgresSource:
    """One database on a PostgreSQL server."""

    engine = "postgresql"

    def __init__(self, server: PgServer, database: str, lock_wait_timeout_s: int = 300,
                 protected: tuple[str, ...] = (), *, recovery: bool = False) -> None:
        """`recovery`: this is a recovery server, where no database is the policy's own (none is protected), and
        restores leave out owners, grants and tablespaces that only the policy's own server has."""
        self.server = server
        self.database = database
        # Every database the policy backs up; on a recovery server, none.
        self._protected: set[str] = set() if recovery else {database, *protected}
        self._recovery = recovery
        self.file_name = f"{database}.pgdump"
        self._lock_wait_ms = lock_wait_timeout_s * 1000

    def probe(self) -> str:
        """Log in, read the server version and how the session is protected; raises a clear error when that fails."""
        with self.server.connect(self.database) as conn:
            version = first_row(conn.execute("SHOW server_version"))[0]
            transit = self.server.tls.describe(self.server.tls_protocol(conn))
        return f"{self.server.display}/{self.database} answers (PostgreSQL {version}; {transit})"

    @property
    def where(self) -> str:
        return self.server.display

    @contextmanager
    def dump(self) -> Iterator[PgDump]:
        """pg_dump and the row counts read one exported snapshot, so both see the same moment."""
        with self.server.connect(self.database) as conn:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            # The counts run beside pg_dump and restic, which keep the CPUs busy already: JIT compiling
            # and parallel workers would only take CPU from them.
            conn.execute("SET LOCAL jit = off")
            conn.execute("SET LOCAL max_parallel_workers_per_gather = 0")
            snapshot = first_row(conn.execute("SELECT pg_export_snapshot()"))[0]
            salt = census.new_salt()
            sequences = sequence_values(conn) if salt else {}
            version = first_row(conn.execute("SHOW server_version"))[0]
            properties = {**database_properties(conn), SERVER_VERSION: pg_version_text(conn.info.server_version)}
            argv = [tool("pg_dump"), "--format=custom", "--compress=0", f"--snapshot={snapshot}",
                    "--no-password", f"--lock-wait-timeout={self._lock_wait_ms}"]
            with self.server.tool_environment(self.database) as env:
                log.debug("running %s (database %s)", " ".join(argv), self.database)
                proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE,
                                        preexec_fn=die_with_parent)  # noqa: PLW1509 - only prctl + getppid: async-signal-safe
                dump = PgDump(self, proc, conn, version=version, properties=properties, salt=salt,
                              sequences=sequences)
                try:
                    yield dump
                finally:
                    stop(proc)
                    dump.abort()

    def exists(self, name: str) -> bool:
        with self._maintenance() as conn:
            return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None

    def destination(self, name: str) -> Destination:
        exists = self.exists(name)
        empty = not exists or self._is_empty(name)
        is_source = name in self._protected
        return Destination(name=name, display=f"database {name} on {self.server.display}",
                           exists=exists, empty=empty, is_source=is_source)

    def restore_name(self, suffix: str) -> str:
        return f"{self.database[:40]}_{suffix}"

    def create_staging(self, destination: Destination, properties: dict[str, str]) -> str:
        """A new database with the original's encoding and locale (the server's defaults if it lacks them)."""
        staging = staging_name(destination.name)
        with self._maintenance() as conn:
            try:
                try:
                    conn.execute(create_database_sql(staging, properties))
                except (psycopg.errors.InvalidParameterValue, psycopg.errors.FeatureNotSupported):
                    log.warning("this server cannot create a database with the original encoding and locale %s; "
                                "the restored database uses the server's defaults", properties)
                    conn.execute(create_database_sql(staging, {}))
            except psycopg.errors.InsufficientPrivilege:
                raise DestinationRefused(f"user {self.server.user} may not create databases on {self.server.display}",
                                         f"grant it: ALTER ROLE {self.server.user} CREATEDB;") from None
            _set_mark(conn, staging, me().mark())  # what lets a later run remove it if this one is killed
        return staging

    def scratch_left_behind(self) -> list[str]:
        """Staging and scratch databases opsctl marked, whose run is provably gone."""
        # A database's owner can write any comment: only a staging name, owned by this role, is believed.
        with self._maintenance() as conn:
            rows = conn.execute("SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database "
                                "WHERE pg_get_userbyid(datdba) = current_user "
                                "AND shobj_description(oid, 'pg_database') LIKE '%opsctl-scratch%'").fetchall()
        return [name for name, mark in rows if left_behind_database(name, mark, self._protected)]

    def load(self, staging: str, chunks: Iterable[bytes]) -> None:
        """pg_restore in one transaction: a failure leaves the staging database empty."""
        # A name with '=' in it would be read as a connection string: always pass a quoted one.
        argv = [tool("pg_restore"), "--exit-on-error", "--single-transaction", "--no-password",
                "--dbname=" + make_conninfo(dbname=staging)]
        if self._recovery:  # the roles and tablespaces the dump names may not exist on a recovery server
            argv[1:1] = ["--no-owner", "--no-privileges", "--no-tablespaces", "--no-subscriptions"]
        with self.server.tool_environment(staging) as env:
            run_restore_tool(argv, env, chunks, f"pg_restore into {staging} failed")

    def row_counts(self, staging: str) -> tuple[TableStats, ...]:
        with self.server.connect(staging) as conn:
            return row_counts(conn)

    def census(self, staging: str, expected: DumpFacts) -> Census:
        """Fingerprints and inventory of a restored database, each table hashed as its backup was."""
        try:
            with self.server.connect(staging) as conn:
                conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
                return take_census(conn, expected.fingerprint_salt, sequence_values(conn), expected.census.methods(),
                                   expected.server_version)
        except psycopg.Error as exc:
            raise RestoreFailed(f"computing the fingerprints of {staging} failed: {database_error_text(exc)}",
                                f"{self.server.user} needs to read every table and large object it restored") from None

    def publish(self, staging: str, destination: Destination) -> str | None:
        """Rename staging into place; an existing database, even an empty one, is renamed aside first, and back on
        failure (an "empty" one may still hold grants, settings or objects opsctl does not count)."""
        aside = None
        with self._maintenance() as conn:
            if destination.exists:
                aside = f"{destination.name[:40]}_before_restore_{secrets.token_hex(3)}"
                self._rename(conn, destination.name, aside)
            try:
                self._rename(conn, staging, destination.name)
            except BaseException:
                if aside is not None:
                    self._rename(conn, aside, destination.name)
                raise
            # Only now: until here a kill leaves a marked staging copy the next run removes; from the rename on,
            # its name is no staging name, so no sweep ever touches it, mark or not.
            _set_mark(conn, destination.name, None)
        return aside

    def check_restorable(self, properties: dict[str, str]) -> None:
        """Refuse a dump from a newer PostgreSQL major version than this server's (one query: the version)."""
        with self._maintenance() as conn:
            check_pg(properties, conn.info.server_version, self.server.display)

    def free_bytes(self) -> int | None:
        """statvfs of the data directory, when the server runs here and this role may read where that is."""
        if not is_local(self.server.host):
            return None
        with self._maintenance() as conn:
            try:
                folder = first_row(conn.execute("SHOW data_directory"))[0]
            except psycopg.errors.InsufficientPrivilege:  # superuser or pg_read_all_settings only
                return None
        return free_bytes_of_server(self.server.host, folder)

    def swap_standby(self, staging: str, name: str, readers: tuple[str, ...]) -> str | None:
        """See opsctl/sources/pg_standby.py for what readers see and what the recovery user needs."""
        with self._maintenance() as conn:
            pg_standby.grant_readers(self.server, conn, staging, readers)
            return pg_standby.swap(self.server, conn, staging, name)

    def standby_state(self, name: str) -> StandbyState | None:
        with self._maintenance() as conn:
            return pg_standby.state(conn, name)

    def discard(self, staging: str) -> None:
        """Drop the staging database; a failure here is reported but never hides the original error."""
        try:
            with self._maintenance() as conn:
                self._drop_staging(conn, staging)
        except (psycopg.Error, DatabaseError) as exc:
            log.warning("could not drop the staging database %s (%s); drop it by hand", staging,
                        exc.__class__.__name__)

    def _drop_staging(self, conn: psycopg.Connection, name: str) -> None:
        """Only ever opsctl's own staging database: FORCE ends sessions, which are opsctl's own there."""
        force = sql.SQL(" WITH (FORCE)" if conn.info.server_version >= DROP_FORCE_SINCE else "")
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}{}").format(sql.Identifier(name), force))

    def _rename(self, conn: psycopg.Connection, old: str, new: str) -> None:
        try:
            conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(old), sql.Identifier(new)))
        except psycopg.errors.ObjectInUse:
            raise RestoreFailed(f"database {old} is in use, so it cannot be renamed",
                                "stop the application that uses it, then run the restore again") from None
        except psycopg.errors.DuplicateDatabase:
            raise RestoreFailed(f"a database named {new} already exists", "choose another name with --to") from None

    def _is_empty(self, name: str) -> bool:
        try:
            with self.server.connect(name) as conn:
                return not has_user_relations(conn)
        except DatabaseError:
            return False  # cannot look inside: treat as holding data

    @contextmanager
    def _maintenance(self) -> Iterator[psycopg.Connection]:
        """An autocommit session on a database that is not the one being changed."""
        last: Exception | None = None
        for name in (*_MAINTENANCE_DATABASES, self.database):
            try:
                conn = self.server.connect(name, autocommit=True)
            except (DatabaseMissing, DatabaseAuthFailed) as exc:  # try the next; a server that is down is down
                last = exc
                continue
            with conn:
                yield conn
            return
        raise last  # type: ignore[misc]


def _set_mark(conn: psycopg.Connection, name: str, mark: str | None) -> None:
    conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(
        sql.Identifier(name), sql.Literal(mark) if mark is not None else sql.SQL("NULL")))


class PgDump(CountedDump):
    """A running pg_dump, with the row counts taken in the exporting transaction alongside it."""

    tool_name = "pg_dump"

    def __init__(self, source: PostgresSource, proc: subprocess.Popen[bytes], conn: psycopg.Connection, *,
                 version: str, properties: dict[str, str], salt: str, sequences: dict[str, int | None]) -> None:
        self._conn = conn
        self._version = version
        self.census_hint = (f"the backup role needs SELECT on every table (GRANT pg_read_all_data TO "
                            f"{source.server.user})")
        super().__init__(source.database, proc, lambda: take_census(conn, salt, sequences), properties)

    def _cancel_census(self) -> None:
        self._conn.cancel()

    def _facts(self, found: Census) -> DumpFacts:
        return DumpFacts.of(found, engine="postgresql", database=self.database, dump_format=DUMP_FORMAT,
                            server_version=self._version, properties=self.properties)
