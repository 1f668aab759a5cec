"""MySQL/MariaDB: mariadb-dump (or mysqldump) in one consistent snapshot, restored into a staging database.

How the dump and the row counts come to show one moment: see opsctl/sources/mysql_snapshot.py.

MySQL and MariaDB have no RENAME DATABASE: publishing moves the tables with one atomic RENAME TABLE
and recreates the triggers (from information_schema), views, routines and events (from a
schema-only mariadb-dump of staging) in the destination; a move that fails half-way is undone.
"""

from __future__ import annotations

import logging
import secrets
import subprocess
from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing, contextmanager
from typing import TYPE_CHECKING

import pymysql

from opsctl.leftovers import left_behind_database, me, staging_name
from opsctl.manifest import Census, DumpFacts, TableStats
from opsctl.process import die_with_parent, stop
from opsctl.sources import census, mysql_standby
from opsctl.sources.base import SERVER_VERSION, Destination, StandbyState
from opsctl.sources.compat import check_mysql, free_bytes_of_server, is_local
from opsctl.sources.errors import DatabaseError, DestinationRefused, RestoreFailed, database_error_text
from opsctl.sources.mysql_census import sequence_values
from opsctl.sources.mysql_client import (
    NO_PRIVILEGE,
    TRANSACTIONAL_ENGINES,
    MySQLServer,
    Trigger,
    base_tables,
    count_rows,
    create_database_sql,
    create_triggers,
    database_exists,
    database_properties,
    has_objects,
    is_oracle_mysqldump,
    names_of,
    quote,
    read_triggers,
    tool,
    tool_environment,
)
from opsctl.sources.mysql_snapshot import CensusPlan, CommitLock, MySQLDump
from opsctl.sources.redact import redact_tool_output
from opsctl.sources.restore_tool import run_restore_tool

if TYPE_CHECKING:
    from pymysql.connections import Connection
    from pymysql.cursors import Cursor

log = logging.getLogger(__name__)
_DUMP_TOOLS = ("mariadb-dump", "mysqldump")
_CLIENT_TOOLS = ("mariadb", "mysql")
# Where a move keeps the triggers' definitions while they exist nowhere else (README: MySQL and MariaDB).
IN_FLIGHT = "opsctl_triggers_in_flight"
_TRIGGER_DEFINITIONS = ("SELECT TRIGGER_NAME, EVENT_OBJECT_TABLE, ACTION_TIMING, EVENT_MANIPULATION, ACTION_ORDER, "
                        "ACTION_STATEMENT, DEFINER, SQL_MODE FROM information_schema.TRIGGERS "
                        "WHERE TRIGGER_SCHEMA = %s")
_DEFINER_PROBE = "opsctl_definer_probe"  # a scratch table in staging, dropped at once
_SHOWN_TABLES = 5  # a warning names this many non-transactional tables, then counts the rest
_TRIGGERS = "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s"
_VIEWS = "SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = %s"
_MOVABLE = ("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
            "AND TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED', 'SEQUENCE')")


class MySQLSource:
    """One database on a MySQL or MariaDB server."""

    engine = "mysql"

    def __init__(self, server: MySQLServer, database: str, lock_wait_timeout_s: int = 300,
                 lock_non_transactional: bool = False, protected: tuple[str, ...] = (), *,
                 recovery: bool = False) -> None:
        """`recovery`: this is a recovery server, where no database is the policy's own (none is protected)."""
        self.server = server
        self.database = database
        self.file_name = f"{database}.sql"
        self._lock_wait_s = lock_wait_timeout_s
        self._lock_all = lock_non_transactional
        # Every database the policy backs up; on a recovery server, none.
        self._protected: set[str] = set() if recovery else {database, *protected}

    def probe(self) -> str:
        """Log in, read the server version and how the session is protected; raises a clear error when that fails."""
        with closing(self.server.connect(self.database)) as conn, conn.cursor() as cur:
            cur.execute("SELECT VERSION()")
            version = cur.fetchone()[0]
            transit = self.server.tls.describe(self.server.tls_protocol(cur))
        return f"{self.server.display}/{self.database} answers ({version}; {transit})"

    @property
    def where(self) -> str:
        return self.server.display

    @contextmanager
    def dump(self) -> Iterator[MySQLDump]:
        """The dump and the row counts start in one commit-free moment (see the module's docstring)."""
        with closing(self.server.connect(self.database)) as counts, closing(self.server.connect()) as lock_conn:
            lock = CommitLock(lock_conn, self._lock_wait_s, self.server.user)
            lock.take()
            try:
                yield from self._dump_under(lock, counts)
            finally:
                lock.release()

    def _dump_under(self, lock: CommitLock, counts: Connection) -> Iterator[MySQLDump]:
        cur = counts.cursor()
        cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        tables = base_tables(cur, self.database)
        cur.execute("SELECT VERSION(), @@max_allowed_packet")  # before the count thread takes this session
        version, max_packet = cur.fetchone()
        unsafe = [name for name, engine in tables if engine.lower() not in TRANSACTIONAL_ENGINES]
        token = f"opsctl-{secrets.token_hex(8)}"
        salt = census.new_salt()
        plan = CensusPlan(self.database, tuple(name for name, _ in tables), () if self._lock_all else tuple(unsafe),
                          salt, sequence_values(cur, self.database) if salt else {})
        with self.server.defaults_file() as fd:
            argv = self._dump_argv(fd, token)
            log.debug("running %s", " ".join(argv))
            proc = subprocess.Popen(argv, env=tool_environment(), pass_fds=(fd,), stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    preexec_fn=die_with_parent)  # noqa: PLW1509 - only prctl + getppid: async-signal-safe
        dump = MySQLDump(self.server, self.database, proc, counts, plan, version=version,
                         properties={**database_properties(cur, self.database), SERVER_VERSION: version}, lock=lock)
        dump.warnings = self._warnings(unsafe, tables)
        dump.max_packet = max_packet
        if not self._lock_all:
            lock.release_when_seen(token, proc)
        try:
            yield dump
        finally:
            stop(proc)
            dump.abort()

    def _dump_argv(self, fd: int, token: str) -> list[str]:
        program = tool(*_DUMP_TOOLS)
        argv = [*self.server.tool_argv(program, fd), "--single-transaction", "--routines", "--events", "--triggers",
                "--hex-blob", "--default-character-set=utf8mb4", "--skip-dump-date", "--no-tablespaces",
                # No comments: the token would be echoed in them and change every dump (deduplication).
                "--skip-comments", f"--where=1 /* {token} */"]
        if is_oracle_mysqldump(program):
            argv.append("--set-gtid-purged=OFF")
        return [*argv, "--", self.database]

    def _warnings(self, unsafe: list[str], tables: list[tuple[str, str]]) -> tuple[str, ...]:
        if not unsafe or self._lock_all:
            return ()
        engines = sorted({engine for name, engine in tables if name in unsafe})
        shown = ", ".join(unsafe[:_SHOWN_TABLES]) + (
            f" and {len(unsafe) - _SHOWN_TABLES} more" if len(unsafe) > _SHOWN_TABLES else "")
        return ((f"database {self.database}: {len(unsafe)} table(s) use a non-transactional engine "
                 f"({', '.join(engines)}): {shown}. They were dumped without a lock, as they were when reached, "
                 "and their row counts are not checked on restore. Convert them to InnoDB, or set "
                 "database.lock_non_transactional: true (commits on the server then wait for the whole dump)."),)

    def exists(self, name: str) -> bool:
        with closing(self.server.connect()) as conn, conn.cursor() as cur:
            return database_exists(cur, name)

    def destination(self, name: str) -> Destination:
        with closing(self.server.connect()) as conn, conn.cursor() as cur:
            exists = database_exists(cur, name)
            empty = not exists or not has_objects(cur, name)
        return Destination(name=name, display=f"database {name} on {self.server.display}", exists=exists,
                           empty=empty, is_source=name in self._protected)

    def restore_name(self, suffix: str) -> str:
        return f"{self.database[:40]}_{suffix}"

    def create_staging(self, destination: Destination, properties: dict[str, str]) -> str:
        """A new database with the original's default character set and collation."""
        staging = staging_name(destination.name)
        with closing(self.server.connect()) as conn, conn.cursor() as cur:
            try:
                cur.execute(create_database_sql(staging, properties))
            except pymysql.err.MySQLError as exc:
                if exc.args[0] in NO_PRIVILEGE:
                    raise DestinationRefused(f"user {self.server.user} may not create databases on "
                                             f"{self.server.display}",
                                             f"grant it: GRANT ALL ON *.* TO {self.server.user}") from None
                raise RestoreFailed(f"cannot create database {staging}: {database_error_text(exc)}") from None
            # What lets a later run remove it if this one is killed; a publish creates a new, unmarked database.
            _set_mark(cur, staging)
        return staging

    def scratch_left_behind(self) -> list[str]:
        """Staging and scratch databases opsctl marked, whose run is provably gone."""
        with closing(self.server.connect()) as conn, conn.cursor() as cur:
            cur.execute("SELECT SCHEMA_NAME, SCHEMA_COMMENT FROM information_schema.SCHEMATA "
                        "WHERE SCHEMA_COMMENT LIKE %s", ("%opsctl-scratch%",))
            rows = cur.fetchall()
        return [name for name, mark in rows if left_behind_database(name, mark, self._protected)]

    def load(self, staging: str, chunks: Iterable[bytes]) -> None:
        """The client runs the dump's statements; it stops at the first error (staging is then discarded)."""
        with self.server.defaults_file() as fd:
            argv = [*self.server.tool_argv(tool(*_CLIENT_TOOLS), fd), "--batch", "--no-auto-rehash",
                    f"--database={staging}"]
            run_restore_tool(argv, tool_environment(), chunks, f"loading the dump into {staging} failed", (fd,))

    def row_counts(self, staging: str) -> tuple[TableStats, ...]:
        with closing(self.server.connect(staging)) as conn, conn.cursor() as cur:
            return count_rows(cur, staging, [name for name, _ in base_tables(cur, staging)])

    def census(self, staging: str, expected: DumpFacts) -> Census:
        """Fingerprints and inventory of a restored database, each table hashed as its backup was."""
        try:
            with closing(self.server.connect(staging)) as conn, conn.cursor() as cur:
                cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
                tables = [name for name, _ in base_tables(cur, staging)]
                return CensusPlan(staging, tuple(tables), (), expected.fingerprint_salt, sequence_values(cur, staging),
                                  expected.census.methods()).take(cur)
        except pymysql.err.MySQLError as exc:
            raise RestoreFailed(f"computing the fingerprints of {staging} failed: {database_error_text(exc)}",
                                f"{self.server.user} needs SELECT on every table it restored") from None

    def publish(self, staging: str, destination: Destination) -> str | None:
        """Move staging's objects into the destination; an existing one, even an empty one, is moved aside first, and
        back on failure (an "empty" one may still hold routines, events or settings)."""
        aside = None
        if destination.exists:
            self._check_triggers_can_move(destination.name, staging)
            aside = f"{destination.name[:40]}_before_restore_{secrets.token_hex(3)}"
            self._move(destination.name, aside)
        try:
            self._move(staging, destination.name)
        except BaseException:
            if aside is not None:
                self._move(aside, destination.name)
            raise
        return aside

    def check_restorable(self, properties: dict[str, str]) -> None:
        """Refuse a dump from the other flavour (MariaDB/MySQL) or a newer release than this server's."""
        with closing(self.server.connect()) as conn, conn.cursor() as cur:
            cur.execute("SELECT VERSION()")
            check_mysql(properties, cur.fetchone()[0], self.server.display)

    def free_bytes(self) -> int | None:
        """statvfs of the server's data folder, when the server runs on this machine."""
        if not is_local(self.server.host):
            return None
        with closing(self.server.connect()) as conn, conn.cursor() as cur:
            cur.execute("SELECT @@datadir")
            folder = cur.fetchone()[0]
        return free_bytes_of_server(self.server.host, folder)

    def swap_standby(self, staging: str, name: str, readers: tuple[str, ...]) -> str | None:
        """See opsctl/sources/mysql_standby.py for what readers see during the swap and what the recovery user
        needs."""
        with closing(self.server.connect()) as conn, conn.cursor() as cur:
            mysql_standby.drop_asides(cur, name)
            exists = mysql_standby.check_is_standby(cur, name, self.server.display)
            mysql_standby.grant_readers(cur, self.server.user, name, readers)
            mysql_standby.strip(cur, staging)
            views = mysql_standby.views_of(cur, staging)
        routines = self._schema_dump(staging, ("--no-create-info", "--no-data", "--skip-triggers", "--routines"))
        view_sql = self._schema_dump(staging, ("--no-data", "--skip-triggers"), views) if views else b""
        with closing(self.server.connect()) as conn, conn.cursor() as cur:
            aside = mysql_standby.swap_tables(cur, staging, name, exists)
            try:
                mysql_standby.drop_views_and_routines(cur, name)
                self._run_sql(name, routines + view_sql)
            except (pymysql.err.MySQLError, DatabaseError) as exc:
                raise RestoreFailed(f"the standby {name} holds the new tables, but recreating its views and routines "
                                    f"failed: {database_error_text(exc)}", "run the refresh again") from None
            cur.execute(f"DROP DATABASE IF EXISTS {quote(staging)}")
            if aside is not None:
                cur.execute(f"DROP DATABASE IF EXISTS {quote(aside)}")
        return aside

    def standby_state(self, name: str) -> StandbyState | None:
        with closing(self.server.connect()) as conn, conn.cursor() as cur:
            return mysql_standby.state(cur, name)

    def discard(self, staging: str) -> None:
        """Drop the staging database; a failure here is reported but never hides the original error."""
        try:
            self._execute(f"DROP DATABASE IF EXISTS {quote(staging)}")
        except (pymysql.err.MySQLError, DatabaseError) as exc:
            log.warning("could not drop the staging database %s (%s); drop it by hand", staging,
                        exc.__class__.__name__)

    def _check_triggers_can_move(self, database: str, scratch: str) -> None:
        """A move drops a database's triggers and recreates them: prove first, in scratch, that this user may recreate
        each one's DEFINER (another user's needs SET USER), so a move can never leave them lost."""
        with closing(self.server.connect()) as conn, conn.cursor() as cur:
            definers = sorted({t.definer for t in read_triggers(cur, database)})
            if not definers:
                return
            cur.execute(f"CREATE TABLE {quote(scratch)}.{quote(_DEFINER_PROBE)} (v INT)")
            try:
                for number, definer in enumerate(definers):
                    self._probe_definer(cur, scratch, database, Trigger(
                        f"opsctl_probe_{number}", _DEFINER_PROBE, "BEFORE", "INSERT", "SET NEW.v = NEW.v", definer, ""))
            finally:
                cur.execute(f"DROP TABLE {quote(scratch)}.{quote(_DEFINER_PROBE)}")

    def _probe_definer(self, cur: Cursor, scratch: str, database: str, probe: Trigger) -> None:
        try:
            create_triggers(cur, scratch, [probe])
        except pymysql.err.MySQLError as exc:
            if exc.args[0] not in NO_PRIVILEGE:
                raise
            raise DestinationRefused(
                f"database {database} has triggers defined by {probe.definer}, which user {self.server.user} may not "
                "recreate; it was left untouched", f"grant it: GRANT SET USER ON *.* TO {self.server.user}; or "
                "restore into a new database (leave out --to)") from None

    def _move(self, src: str, dst: str) -> None:
        """RENAME TABLE moves the tables in one statement; triggers, views, routines and events are recreated."""
        routines = self._schema_dump(src, ("--no-create-info", "--no-data", "--skip-triggers", "--routines",
                                           "--events"))
        with closing(self.server.connect()) as conn, conn.cursor() as cur:
            views = names_of(cur, _VIEWS, src)
            view_sql = self._schema_dump(src, ("--no-data", "--skip-triggers"), views) if views else b""
            triggers = read_triggers(cur, src)
            cur.execute(create_database_sql(dst, database_properties(cur, src)))
            tables = names_of(cur, _MOVABLE, src)
            if triggers:  # on the server before any is dropped: a kill from here on loses none of them
                cur.execute(f"CREATE TABLE {quote(dst)}.{quote(IN_FLIGHT)} AS {_TRIGGER_DEFINITIONS}", (src,))
            for trigger in triggers:  # a table with triggers cannot change database
                cur.execute(f"DROP TRIGGER {quote(src)}.{quote(trigger.name)}")
            try:
                _rename(cur, src, dst, tables)
                create_triggers(cur, dst, triggers)
                self._run_sql(dst, routines + view_sql)
            except BaseException:
                log.warning("moving database %s to %s failed; putting it back", src, dst)
                _put_back(cur, src, dst, triggers)
                raise
            cur.execute(f"DROP TABLE IF EXISTS {quote(dst)}.{quote(IN_FLIGHT)}")
            cur.execute(f"DROP DATABASE {quote(src)}")

    def _schema_dump(self, database: str, options: tuple[str, ...], objects: Sequence[str] = ()) -> bytes:
        """Definitions only (no rows): small enough to hold in memory between two steps of a move."""
        with self.server.defaults_file() as fd:
            argv = [*self.server.tool_argv(tool(*_DUMP_TOOLS), fd), "--skip-comments", "--skip-dump-date",
                    "--default-character-set=utf8mb4", *options, "--", database, *objects]
            done = subprocess.run(argv, env=tool_environment(), pass_fds=(fd,), capture_output=True, check=False)
        if done.returncode != 0:
            raise RestoreFailed(f"reading the definitions in database {database} failed: "
                                f"{redact_tool_output(done.stderr.decode('utf-8', 'replace'))}")
        return done.stdout

    def _run_sql(self, database: str, script: bytes) -> None:
        self.load(database, [script])

    def _execute(self, statement: str) -> None:
        with closing(self.server.connect()) as conn, conn.cursor() as cur:
            cur.execute(statement)


def _set_mark(cur: Cursor, database: str) -> None:
    try:
        cur.execute(f"ALTER DATABASE {quote(database)} COMMENT = %s", (me().mark(),))
    except pymysql.err.ProgrammingError:  # MySQL proper has no database comments: it stays unmarked
        log.debug("database %s cannot carry opsctl's mark", database)


def _put_back(cur: Cursor, src: str, dst: str, triggers: list[Trigger]) -> None:
    """Undo a move that failed half-way: tables back, their triggers recreated, the new database dropped."""
    for trigger in read_triggers(cur, dst):
        cur.execute(f"DROP TRIGGER {quote(dst)}.{quote(trigger.name)}")
    _rename(cur, dst, src, names_of(cur, _MOVABLE, dst))
    create_triggers(cur, src, triggers)
    cur.execute(f"DROP DATABASE {quote(dst)}")


def _rename(cur: Cursor, src: str, dst: str, tables: list[str]) -> None:
    if tables:
        cur.execute("RENAME TABLE " + ", ".join(f"{quote(src)}.{quote(t)} TO {quote(dst)}.{quote(t)}" for t in tables))
