"""How a MySQL/MariaDB dump and its row counts come to show one moment, even under write load.

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
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from contextlib import closing, suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pymysql

from opsctl.manifest import Census, DumpFacts
from opsctl.sources.counted_dump import CountedDump
from opsctl.sources.errors import DatabaseAuthFailed, DatabaseError, DumpFailed
from opsctl.sources.mysql_census import take_census
from opsctl.sources.mysql_client import NO_PRIVILEGE, MySQLServer
from opsctl.sources.mysql_fingerprint import packet_warnings, rounding_warnings

if TYPE_CHECKING:
    from pymysql.connections import Connection
    from pymysql.cursors import Cursor

log = logging.getLogger(__name__)
DUMP_FORMAT = "mariadb-dump SQL text (--single-transaction --hex-blob, utf8mb4)"
_LOCK_TIMEOUT = 1205


class CommitLock:
    """A session that holds every commit on the server while the snapshots start."""

    def __init__(self, conn: Connection, wait_s: int, user: str) -> None:
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
        if code in NO_PRIVILEGE:
            return DatabaseAuthFailed(f"user {self._user} may not hold commits for the moment a backup starts "
                                      f"(error {code})", f"grant it: GRANT RELOAD ON *.* TO {self._user}")
        if code == _LOCK_TIMEOUT:
            return DumpFailed(f"the backup lock was not granted within {self._wait_s} s (a long DDL statement "
                              "or another backup holds it)", "run the backup again later, or raise "
                              "database.lock_wait_timeout")
        return DumpFailed(f"taking the backup lock failed (error {code})")

    def release_when_seen(self, token: str, proc: subprocess.Popen[bytes]) -> None:
        """Release once the dump runs a query carrying the token (so its snapshot exists) or has ended."""
        self._watcher = threading.Thread(target=self._watch, args=(token, proc), daemon=True)
        self._watcher.start()

    def _watch(self, token: str, proc: subprocess.Popen[bytes]) -> None:
        try:
            with self._conn.cursor() as cur:
                while proc.poll() is None:
                    cur.execute("SELECT 1 FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID() "
                                "AND INFO LIKE %s LIMIT 1", (f"%{token}%",))
                    if cur.fetchone():
                        break
                    time.sleep(0.002)
            self._unlock()
        except Exception as exc:  # noqa: BLE001 - the lock session is gone: the moment is not proven
            self.error = exc

    def wait(self) -> None:
        if self._watcher is not None:
            self._watcher.join()

    def release(self) -> None:
        """Let commits go on (again safe to call); after a lost session the server has released it already."""
        self.wait()
        with suppress(pymysql.err.MySQLError):
            self._unlock()

    def _unlock(self) -> None:
        if self._held:
            self._held = False
            with self._conn.cursor() as cur:
                cur.execute("BACKUP STAGE END" if self._mariadb else "UNLOCK TABLES")
            log.debug("commits go on")


@dataclass(frozen=True)
class CensusPlan:
    """Which tables to count and fingerprint in the snapshot; tables dumped without a lock are listed uncounted."""

    database: str
    tables: tuple[str, ...]
    uncounted: tuple[str, ...]
    salt: str = ""
    sequences: dict[str, int] = field(default_factory=dict)
    methods: dict[str, str | None] | None = None
    """Table -> how its backup fingerprint was taken (a restore's census); None: the current way."""

    def take(self, cur: Cursor) -> Census:
        return take_census(cur, self.database, list(self.tables), self.uncounted, self.salt,
                           sequences=self.sequences, methods=self.methods)


class MySQLDump(CountedDump):
    """A running mariadb-dump, with the row counts read in the count session's snapshot alongside it."""

    tool_name = "mariadb-dump"

    def __init__(  # noqa: PLR0913 - keyword-only past the plan; each is a separate piece of the dump's moment
        self, server: MySQLServer, database: str, proc: subprocess.Popen[bytes], conn: Connection, plan: CensusPlan,
        *, version: str, properties: dict[str, str], lock: CommitLock,
    ) -> None:
        self.warnings: tuple[str, ...] = ()
        self.max_packet = 0
        """The server's max_allowed_packet: a restore onto it refuses larger statements (0: unknown)."""
        self._server = server
        self._conn = conn
        self._version = version
        self._lock = lock
        super().__init__(database, proc, lambda: _census_in(conn, plan), properties)

    def _cancel_census(self) -> None:
        """pymysql cannot cancel a running query itself: KILL QUERY from a second session."""
        try:
            with closing(self._server.connect()) as conn, conn.cursor() as cur:
                cur.execute(f"KILL QUERY {int(self._conn.thread_id())}")
        except (pymysql.err.MySQLError, DatabaseError):
            pass

    def _check(self, code: int) -> None:
        self._lock.wait()
        if self._lock.error is not None:
            raise DumpFailed(f"the session holding the backup lock of database {self.database} was lost "
                             f"({self._lock.error.__class__.__name__})",
                             "no snapshot was kept from this run; run the backup again")
        super()._check(code)

    def _facts(self, found: Census) -> DumpFacts:
        warnings = self.warnings + rounding_warnings(self.database, found.tables) \
            + packet_warnings(self.database, found.tables, self.max_packet)
        return DumpFacts.of(found, engine="mysql", database=self.database, dump_format=DUMP_FORMAT,
                            server_version=self._version, properties=self.properties, warnings=warnings)


def _census_in(conn: Connection, plan: CensusPlan) -> Census:
    with conn.cursor() as cur:
        return plan.take(cur)
