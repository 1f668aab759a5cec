"""MySQL/MariaDB: mariadb-dump (or mysqldump) in one consistent snapshot, restored into a staging database.

How the row counts come to describe exactly the dumped data, even under write load:

1. A lock session stops every commit on the server: `BACKUP STAGE BLOCK_COMMIT` on MariaDB (reads
   and running transactions go on), `FLUSH TABLES WITH READ LOCK` on MySQL. Once it returns, no
   commit is in progress and none can start.
2. opsctl's count session opens `START TRANSACTION WITH CONSISTENT SNAPSHOT`: it sees every commit
   made before the lock and none after.
3. mariadb-dump starts with `--single-transaction` and opens its own consistent snapshot. Its data
   queries carry a unique token in their WHERE clause (`--where='1 /* opsctl-... */'`); they run
   only after its START TRANSACTION. The lock session waits until one shows in the process list
   (or the dump has ended) and only then lets commits go on.

Both snapshots were taken with no commit in between, so they show the same moment. Non-transactional
tables (MyISAM, Aria, ...) have no snapshot: by default they are dumped as they are when reached,
left uncounted, and the backup warns; with `lock_non_transactional: true` the lock is kept until
the dump ends, which makes every table exact at the price of holding the server's commits meanwhile.

MySQL and MariaDB have no RENAME DATABASE: publishing moves the tables with one atomic RENAME TABLE
and recreates the views, triggers, routines and events from a schema-only mariadb-dump of staging.
"""

from __future__ import annotations

import logging
import secrets
import subprocess
import threading
import time
from contextlib import closing, contextmanager
from typing import Iterable, Iterator

import pymysql

from opsctl.manifest import DumpFacts, TableStats
from opsctl.process import StreamTail, die_with_parent, feed, read_chunks, stop, widen_pipe
from opsctl.sources.base import Destination
from opsctl.sources.errors import (DatabaseAuthFailed, DatabaseError, DestinationRefused, DumpFailed,
                                   RestoreFailed)
from opsctl.sources.mysql_client import (TRANSACTIONAL_ENGINES, MySQLServer, base_tables, count_rows,
                                         create_database_sql, database_exists, database_properties, has_objects,
                                         is_oracle_mysqldump, names_of, quote, read_triggers, create_triggers,
                                         tool, tool_environment, Trigger)
from opsctl.sources.redact import redact_tool_output

log = logging.getLogger(__name__)
DUMP_FORMAT = "mariadb-dump SQL text (--single-transaction --hex-blob, utf8mb4)"
_DUMP_TOOLS = ("mariadb-dump", "mysqldump")
_CLIENT_TOOLS = ("mariadb", "mysql")
_NO_PRIVILEGE = (1044, 1045, 1142, 1227)
_LOCK_TIMEOUT = 1205
_TRIGGERS = "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s"
_VIEWS = "SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = %s"
_MOVABLE = ("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
            "AND TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED', 'SEQUENCE')")


class MySQLSource:
    """One database on a MySQL or MariaDB server."""

    engine = "mysql"

    def __init__(self, server: MySQLServer, database: str, lock_wait_timeout_s: int = 300,
                 lock_non_transactional: bool = False, protected: tuple[str, ...] = ()) -> None:
        self.server = server
        self.database = database
        self.file_name = f"{database}.sql"
        self._lock_wait_s = lock_wait_timeout_s
        self._lock_all = lock_non_transactional
        self._protected = {database, *protected}  # every database the policy backs up

    @contextmanager
    def dump(self) -> Iterator["MySQLDump"]:
        """The dump and the row counts start in one commit-free moment (see the module's docstring)."""
        with closing(self.server.connect(self.database)) as counts, closing(self.server.connect()) as lock_conn:
            lock = CommitLock(lock_conn, self._lock_wait_s, self.server.user)
            lock.take()
            try:
                yield from self._dump_under(lock, counts)
            finally:
                lock.release()

    def _dump_under(self, lock: "CommitLock", counts) -> Iterator["MySQLDump"]:
        cur = counts.cursor()
        cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        tables = base_tables(cur, self.database)
        cur.execute("SELECT VERSION()")
        version = cur.fetchone()[0]
        unsafe = [name for name, engine in tables if engine.lower() not in TRANSACTIONAL_ENGINES]
        token = f"opsctl-{secrets.token_hex(8)}"
        plan = CountPlan(self.database, [name for name, _ in tables], () if self._lock_all else tuple(unsafe))
        with self.server.defaults_file() as fd:
            argv = self._dump_argv(fd, token)
            log.debug("running %s", " ".join(argv))
            proc = subprocess.Popen(argv, env=tool_environment(), pass_fds=(fd,), stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=die_with_parent)
        dump = MySQLDump(self, proc, counts, plan, version, database_properties(cur, self.database), lock)
        dump.warnings = self._warnings(unsafe, tables)
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
        shown = ", ".join(unsafe[:5]) + (f" and {len(unsafe) - 5} more" if len(unsafe) > 5 else "")
        return (f"database {self.database}: {len(unsafe)} table(s) use a non-transactional engine "
                f"({', '.join(engines)}): {shown}. They were dumped without a lock, as they were when reached, "
                "and their row counts are not checked on restore. Convert them to InnoDB, or set "
                "database.lock_non_transactional: true (commits on the server then wait for the whole dump).",)

    def destination(self, name: str) -> Destination:
        with closing(self.server.connect()) as conn, conn.cursor() as cur:
            exists = database_exists(cur, name)
            empty = not exists or not has_objects(cur, name)
        return Destination(name=name, display=f"database {name} on {self.server.display}", exists=exists,
                           empty=empty, is_source=name in self._protected)

    def create_staging(self, destination: Destination, properties: dict[str, str]) -> str:
        """A new database with the original's default character set and collation."""
        staging = f"{destination.name[:40]}_opsctl_restore_{secrets.token_hex(3)}"
        with closing(self.server.connect()) as conn, conn.cursor() as cur:
            try:
                cur.execute(create_database_sql(staging, properties))
            except pymysql.err.MySQLError as exc:
                if exc.args[0] in _NO_PRIVILEGE:
                    raise DestinationRefused(f"user {self.server.user} may not create databases on "
                                             f"{self.server.display}",
                                             f"grant it: GRANT ALL ON *.* TO {self.server.user}") from None
                raise RestoreFailed(f"cannot create database {staging}: error {exc.args[0]}") from None
        return staging

    def load(self, staging: str, chunks: Iterable[bytes]) -> None:
        """The client runs the dump's statements; it stops at the first error (staging is then discarded)."""
        with self.server.defaults_file() as fd:
            argv = [*self.server.tool_argv(tool(*_CLIENT_TOOLS), fd), "--batch", "--no-auto-rehash",
                    f"--database={staging}"]
            log.debug("running %s", " ".join(argv))
            with subprocess.Popen(argv, env=tool_environment(), pass_fds=(fd,), stdin=subprocess.PIPE,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  preexec_fn=die_with_parent) as proc:
                widen_pipe(proc.stdin)
                err = StreamTail(proc.stderr)
                feed(proc, chunks)
                if proc.wait() != 0:
                    raise RestoreFailed(f"loading the dump into {staging} failed:\n{redact_tool_output(err.text())}",
                                        "nothing was changed at the destination")

    def table_stats(self, staging: str) -> tuple[TableStats, ...]:
        with closing(self.server.connect(staging)) as conn, conn.cursor() as cur:
            return count_rows(cur, staging, [name for name, _ in base_tables(cur, staging)])

    def publish(self, staging: str, destination: Destination) -> str | None:
        """Move staging's objects into the destination; an existing one is moved aside first, and back on failure."""
        aside = None
        if destination.exists and destination.empty:
            self._execute(f"DROP DATABASE {quote(destination.name)}")
        elif destination.exists:
            aside = f"{destination.name[:40]}_before_restore_{secrets.token_hex(3)}"
            self._move(destination.name, aside)
        try:
            self._move(staging, destination.name)
        except BaseException:
            if aside is not None:
                self._move(aside, destination.name)
            raise
        return aside

    def discard(self, staging: str) -> None:
        """Drop the staging database; a failure here is reported but never hides the original error."""
        try:
            self._execute(f"DROP DATABASE IF EXISTS {quote(staging)}")
        except (pymysql.err.MySQLError, DatabaseError) as exc:
            log.warning("could not drop the staging database %s (%s); drop it by hand", staging,
                        exc.__class__.__name__)

    def _move(self, src: str, dst: str) -> None:
        """RENAME TABLE moves the tables in one statement; triggers, views, routines and events are recreated."""
        routines = self._schema_dump(src, ("--no-create-info", "--no-data", "--skip-triggers", "--routines", "--events"))
        with closing(self.server.connect()) as conn, conn.cursor() as cur:
            views = names_of(cur, _VIEWS, src)
            view_sql = self._schema_dump(src, ("--no-data", "--skip-triggers"), views) if views else b""
            triggers = read_triggers(cur, src)
            cur.execute(create_database_sql(dst, database_properties(cur, src)))
            tables = names_of(cur, _MOVABLE, src)
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
            cur.execute(f"DROP DATABASE {quote(src)}")

    def _schema_dump(self, database: str, options: tuple[str, ...], objects: list[str] = ()) -> bytes:
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


def _put_back(cur, src: str, dst: str, triggers: list[Trigger]) -> None:
    """Undo a move that failed half-way: tables back, their triggers recreated, the new database dropped."""
    for trigger in read_triggers(cur, dst):
        cur.execute(f"DROP TRIGGER {quote(dst)}.{quote(trigger.name)}")
    _rename(cur, dst, src, names_of(cur, _MOVABLE, dst))
    create_triggers(cur, src, triggers)
    cur.execute(f"DROP DATABASE {quote(dst)}")


def _rename(cur, src: str, dst: str, tables: list[str]) -> None:
    if tables:
        cur.execute("RENAME TABLE " + ", ".join(f"{quote(src)}.{quote(t)} TO {quote(dst)}.{quote(t)}" for t in tables))


class CommitLock:
    """A session that holds every commit on the server while the snapshots start."""

    def __init__(self, conn, wait_s: int, user: str) -> None:
        self._conn = conn
        self._wait_s = wait_s
        self._user = user
        self._held = False
        self._mariadb = False
        self._watcher: threading.Thread | None = None
        self.error: Exception | None = None

    def take(self) -> None:
        with self._conn.cursor() as cur:
            cur.execute("SELECT VERSION()")
            self._mariadb = "mariadb" in cur.fetchone()[0].lower()
            cur.execute("SET SESSION lock_wait_timeout = %s", (max(1, self._wait_s),))
            steps = ("BACKUP STAGE START", "BACKUP STAGE BLOCK_COMMIT") if self._mariadb else (
                "FLUSH TABLES WITH READ LOCK",)
            try:
                for step in steps:
                    cur.execute(step)
            except pymysql.err.MySQLError as exc:
                raise self._lock_error(exc) from None
        self._held = True
        log.debug("commits are held (%s)", steps[-1])

    def _lock_error(self, exc: pymysql.err.MySQLError) -> Exception:
        code = exc.args[0]
        if code in _NO_PRIVILEGE:
            return DatabaseAuthFailed(f"user {self._user} may not hold commits for the moment a backup starts "
                                      f"(error {code})", f"grant it: GRANT RELOAD ON *.* TO {self._user}")
        if code == _LOCK_TIMEOUT:
            return DumpFailed(f"the backup lock was not granted within {self._wait_s} s (a long DDL statement "
                              "or another backup holds it)", "run the backup again later, or raise "
                              "database.lock_wait_timeout")
        return DumpFailed(f"taking the backup lock failed (error {code})")

    def release_when_seen(self, token: str, proc: subprocess.Popen) -> None:
        """Release once the dump runs a query carrying the token (so its snapshot exists) or has ended."""
        self._watcher = threading.Thread(target=self._watch, args=(token, proc), daemon=True)
        self._watcher.start()

    def _watch(self, token: str, proc: subprocess.Popen) -> None:
        try:
            with self._conn.cursor() as cur:
                while proc.poll() is None:
                    cur.execute("SELECT 1 FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID() "
                                "AND INFO LIKE %s LIMIT 1", (f"%{token}%",))
                    if cur.fetchone():
                        break
                    time.sleep(0.002)
            self._unlock()
        except Exception as exc:  # the lock session is gone: the moment is not proven
            self.error = exc

    def wait(self) -> None:
        if self._watcher is not None:
            self._watcher.join()

    def release(self) -> None:
        """Let commits go on (again safe to call); after a lost session the server has released it already."""
        self.wait()
        try:
            self._unlock()
        except pymysql.err.MySQLError:
            pass

    def _unlock(self) -> None:
        if self._held:
            self._held = False
            with self._conn.cursor() as cur:
                cur.execute("BACKUP STAGE END" if self._mariadb else "UNLOCK TABLES")
            log.debug("commits go on")


class CountPlan:
    """Which tables to count in the snapshot; tables dumped without a lock are listed uncounted."""

    def __init__(self, database: str, tables: list[str], uncounted: tuple[str, ...]) -> None:
        self.database = database
        self.tables = tables
        self.uncounted = uncounted

    def count(self, cur) -> tuple[TableStats, ...]:
        counted = {t.name: t for t in count_rows(cur, self.database, [t for t in self.tables
                                                                      if t not in self.uncounted])}
        return tuple(counted.get(name, TableStats(name=name, rows=None)) for name in self.tables)


class MySQLDump:
    """A running mariadb-dump, with the row counts read in the count session's snapshot alongside it."""

    def __init__(self, source: MySQLSource, proc: subprocess.Popen, conn, plan: CountPlan, version: str,
                 properties: dict[str, str], lock: CommitLock) -> None:
        self.properties = properties
        self._lock = lock
        self.warnings: tuple[str, ...] = ()
        self._source = source
        self._proc = proc
        self._conn = conn
        self._version = version
        self._stats: tuple[TableStats, ...] | Exception = ()
        self._counter = threading.Thread(target=self._count, args=(plan,), daemon=True)
        self._counter.start()
        self._stderr = StreamTail(proc.stderr)
        widen_pipe(proc.stdout)
        self.facts: DumpFacts | None = None

    def _count(self, plan: CountPlan) -> None:
        try:
            with self._conn.cursor() as cur:
                self._stats = plan.count(cur)
            log.debug("row counts read for %d tables", len(self._stats))
        except Exception as exc:  # reported when the dump ends
            self._stats = exc

    def abort(self) -> None:
        """Stop counting rows when the dump ended early: KILL QUERY from a second session."""
        if not self._counter.is_alive():
            return
        try:
            with closing(self._source.server.connect()) as conn, conn.cursor() as cur:
                cur.execute(f"KILL QUERY {int(self._conn.thread_id())}")
        except (pymysql.err.MySQLError, DatabaseError):
            pass
        self._counter.join(timeout=10)

    def chunks(self) -> Iterator[bytes]:
        yield from read_chunks(self._proc.stdout)
        code = self._proc.wait()
        self._counter.join()
        self._lock.wait()
        self._check(code)
        self.facts = DumpFacts(engine="mysql", database=self._source.database, dump_format=DUMP_FORMAT,
                               server_version=self._version, tables=self._stats, properties=self.properties,
                               warnings=self.warnings)

    def _check(self, code: int) -> None:
        name = self._source.database
        if self._lock.error is not None:
            raise DumpFailed(f"the session holding the backup lock of database {name} was lost "
                             f"({self._lock.error.__class__.__name__})", "no snapshot was kept from this run; "
                             "run the backup again")
        if isinstance(self._stats, Exception):
            raise DumpFailed(f"reading the row counts of database {name} failed: "
                             f"{redact_tool_output(str(self._stats))}",
                             "the backup user needs SELECT on every table; no snapshot was kept from this run")
        if code != 0:
            detail = redact_tool_output(self._stderr.text()) or f"exit status {code}"
            raise DumpFailed(f"mariadb-dump of database {name} failed: {detail}",
                             "no snapshot was kept from this run; fix the cause and run the backup again")
