"""Connecting to MySQL/MariaDB: pymysql sessions in-process, and credentials for the command-line tools."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any

import pymysql

from opsctl.errors import described
from opsctl.manifest import TableStats
from opsctl.process import tool_environment as process_environment
from opsctl.sources import Tls
from opsctl.sources.errors import (
    DatabaseAuthFailed,
    DatabaseMissing,
    DatabaseUnreachable,
    ToolMissing,
    database_error_text,
)

if TYPE_CHECKING:
    from pymysql.cursors import Cursor

# Rows live in base tables (system-versioned ones too); views and sequences hold none of their own.
_TABLES = """
SELECT TABLE_NAME, COALESCE(ENGINE, '') FROM information_schema.TABLES
WHERE TABLE_SCHEMA = %s AND TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED') ORDER BY TABLE_NAME
"""
_OBJECT_COUNT = """
SELECT (SELECT count(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %(db)s)
     + (SELECT count(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = %(db)s)
     + (SELECT count(*) FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %(db)s)
"""
TRANSACTIONAL_ENGINES = frozenset({"innodb"})
# Variables that would override the defaults file or point the tools at another server.
_DROPPED_ENV = ("MYSQL_PWD", "MYSQL_HOST", "MYSQL_TCP_PORT", "MYSQL_UNIX_PORT", "MARIADB_PWD")
_AUTH_ERRORS = (1044, 1045, 1698)
NO_PRIVILEGE = (1044, 1045, 1142, 1227)  # access denied: to a database, a login, a table, a privilege
_UNKNOWN_DATABASE = 1049


@dataclass(frozen=True)
class MySQLServer:
    """How to reach one MySQL/MariaDB server as one user: TCP, or a socket when host is a path."""

    host: str
    port: int
    user: str
    password: str | None = field(default=None, repr=False)
    tls: Tls = field(default_factory=Tls)

    @property
    def display(self) -> str:
        where = self.host if self.is_socket else f"{self.host}:{self.port}"
        return f"mysql://{self.user}@{where}"

    @property
    def is_socket(self) -> bool:
        return self.host.startswith("/")

    def connect(self, database: str | None = None) -> pymysql.connections.Connection:
        """An autocommit session with a clear error for the usual failures (down, wrong password, no database, TLS)."""
        where: dict[str, Any] = {"unix_socket": self.host} if self.is_socket else {"host": self.host, "port": self.port}
        try:
            return pymysql.connect(user=self.user, password=self.password or "", database=database,
                                   charset="utf8mb4", autocommit=True, connect_timeout=10,
                                   program_name="opsctl", **where, **self._tls_settings())
        except pymysql.err.MySQLError as exc:
            raise self._connect_error(database, exc) from None
        except (ssl.SSLError, OSError) as exc:  # the CA file changed since the policy was checked
            raise DatabaseUnreachable(f"tls.ca_file {self.tls.ca_file} cannot be used: {described(exc)}",
                                      "give database.tls.ca_file the PEM certificate of the server's CA") from None

    def _tls_settings(self) -> dict[str, Any]:
        """pymysql's TLS arguments: a context (pymysql then refuses a server without TLS), or TLS turned off."""
        if self.tls.mode is None:
            return {}  # loopback or a socket with no tls in the policy: pymysql's default, as before
        if self.tls.mode == "disable":
            return {"ssl_disabled": True}
        if not self.tls.verifies:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            return {"ssl": context}
        context = ssl.create_default_context(cafile=str(self.tls.ca_file) if self.tls.ca_file else None)
        context.check_hostname = self.tls.mode == "verify-full"
        # As OpenSSL checks for the client tools: Python 3.13's strict X.509 checks would refuse more than they do.
        context.verify_flags &= ~getattr(ssl, "VERIFY_X509_STRICT", 0)
        return {"ssl": context}

    def tls_protocol(self, cur: Cursor) -> str | None:
        """The TLS version of a session ("TLSv1.3"), or None when it is not encrypted."""
        cur.execute("SHOW SESSION STATUS LIKE 'Ssl_version'")
        row = cur.fetchone()
        return row[1] if row and row[1] else None

    def _connect_error(self, database: str | None, exc: pymysql.err.MySQLError) -> Exception:
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
        where = f"{self.display}/{database or ''}"
        said = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], str) else ""
        refused = self.tls.refusal(said.lower(), "MySQL", where, self.host, database_error_text(exc))
        if refused is not None:
            return refused
        if code in _AUTH_ERRORS:
            return DatabaseAuthFailed(f"MySQL refused the login of user {self.user} at {where} (error {code})",
                                      "check the policy's database.password source and the user's grants")
        if code == _UNKNOWN_DATABASE:
            return DatabaseMissing(f"database {database} does not exist at {self.display}",
                                   "check database.names in the policy")
        return DatabaseUnreachable(f"cannot connect to MySQL at {where} (error {code or exc.__class__.__name__})",
                                   "check that the server is running and database.host/port are right")

    def tool_argv(self, program: str, defaults_fd: int) -> list[str]:
        """A client tool's first arguments: the password file by descriptor, then where to connect, then TLS."""
        # --defaults-extra-file must come first; the operator's own option files still apply, except where the
        # command line overrides them.
        argv = [program, f"--defaults-extra-file=/dev/fd/{defaults_fd}", f"--user={self.user}"]
        if self.is_socket:
            return [*argv, "--protocol=SOCKET", f"--socket={self.host}", *self._tls_options()]
        return [*argv, "--protocol=TCP", f"--host={self.host}", f"--port={self.port}", *self._tls_options()]

    def _tls_options(self) -> list[str]:
        """MariaDB 10.11's client options for the policy's tls.mode (11.4+ clients verify by default; 10.11 not).

        On the command line, not in the defaults file: ~/.my.cnf is read after that file and would win over it.
        Only --ssl-verify-server-cert makes these tools refuse a server without TLS; with require and verify-ca
        opsctl's own sessions (which always come first) refuse it instead.
        """
        if self.tls.mode is None:
            return []
        if self.tls.mode == "disable":
            return ["--skip-ssl"]
        options = ["--ssl"]
        if self.tls.ca_file is not None:  # a CA makes the client check the certificate's chain
            options.append(f"--ssl-ca={self.tls.ca_file}")
        if self.tls.mode == "verify-full":
            options.append("--ssl-verify-server-cert")
        return options

    @contextmanager
    def defaults_file(self) -> Iterator[int]:
        """A pipe whose read end holds a [client] section with the password; pass it with pass_fds."""
        read_fd, write_fd = os.pipe()
        try:
            with os.fdopen(write_fd, "w") as handle:  # a few bytes: they fit in the pipe before anyone reads
                handle.write("[client]\n")
                if self.password is not None:
                    handle.write(f'password="{_option_value(self.password)}"\n')
            yield read_fd
        finally:
            os.close(read_fd)


def _option_value(value: str) -> str:
    """Escaped for a MySQL option file; newlines cannot be written there at all."""
    if "\n" in value or "\r" in value:
        raise DatabaseAuthFailed("the database password contains a line break, which MySQL's tools cannot read",
                                 "use a password without line breaks")
    return value.replace("\\", "\\\\").replace('"', '\\"')


def tool_environment() -> dict[str, str]:
    return process_environment(*_DROPPED_ENV)


@cache
def tool(*names: str) -> str:
    """The first of these client tools that is installed (mariadb-dump, then mysqldump), or a clear error."""
    for name in names:
        found = shutil.which(name)
        if found is not None:
            return found
    raise ToolMissing(f"{' or '.join(names)} is not installed", "install it: sudo apt-get install mariadb-client")


@cache
def is_oracle_mysqldump(path: str) -> bool:
    """Oracle's mysqldump writes GTID statements a restore into a new database cannot run; MariaDB's never."""
    version = subprocess.run([path, "--version"], capture_output=True, text=True, env=tool_environment(),
                             check=False).stdout
    return "mariadb" not in version.lower()


def quote(identifier: str) -> str:
    return "`" + identifier.replace("`", "``") + "`"


def base_tables(cur: Cursor, database: str) -> list[tuple[str, str]]:
    """(name, engine) of every table that holds rows."""
    cur.execute(_TABLES, (database,))
    return list(cur.fetchall())


def count_rows(cur: Cursor, database: str, tables: list[str]) -> tuple[TableStats, ...]:
    """Exact row counts, read in the session's current transaction."""
    stats: list[TableStats] = []
    for name in tables:
        cur.execute(f"SELECT count(*) FROM {quote(database)}.{quote(name)}")
        stats.append(TableStats(name=name, rows=cur.fetchone()[0]))
    return tuple(stats)


def database_properties(cur: Cursor, database: str) -> dict[str, str]:
    """Default character set and collation: a restore creates its database with them."""
    cur.execute("SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA "
                "WHERE SCHEMA_NAME = %s", (database,))
    charset, collation = cur.fetchone()
    return {"mysql-charset": charset, "mysql-collation": collation}


def create_database_sql(name: str, properties: dict[str, str]) -> str:
    sql = f"CREATE DATABASE {quote(name)}"
    if properties.get("mysql-charset", "").isidentifier():
        sql += f" CHARACTER SET {properties['mysql-charset']}"
    if properties.get("mysql-collation", "").isidentifier():
        sql += f" COLLATE {properties['mysql-collation']}"
    return sql


def database_exists(cur: Cursor, name: str) -> bool:
    cur.execute("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (name,))
    row: tuple[int] | None = cur.fetchone()
    return row is not None


def has_objects(cur: Cursor, name: str) -> bool:
    """Tables, views, routines or events: anything a restore would replace."""
    cur.execute(_OBJECT_COUNT, {"db": name})
    objects: int = cur.fetchone()[0]
    return objects > 0


def names_of(cur: Cursor, query: str, database: str) -> list[str]:
    cur.execute(query, (database,))
    return [row[0] for row in cur.fetchall()]


@dataclass(frozen=True)
class Trigger:
    """A trigger as the server stores it; recreated by name in another database (DDL text may name the old one)."""

    name: str
    table: str
    timing: str
    event: str
    statement: str
    definer: str
    sql_mode: str

    def create_sql(self) -> str:
        user, _, host = self.definer.rpartition("@")
        return (f"CREATE DEFINER={quote(user)}@{quote(host)} TRIGGER {quote(self.name)} {self.timing} {self.event} "
                f"ON {quote(self.table)} FOR EACH ROW {self.statement}")


def read_triggers(cur: Cursor, database: str) -> list[Trigger]:
    """In the order they fire, so recreating them one by one keeps that order."""
    cur.execute("SELECT TRIGGER_NAME, EVENT_OBJECT_TABLE, ACTION_TIMING, EVENT_MANIPULATION, ACTION_STATEMENT, "
                "DEFINER, SQL_MODE FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s "
                "ORDER BY EVENT_OBJECT_TABLE, EVENT_MANIPULATION, ACTION_TIMING, ACTION_ORDER", (database,))
    return [Trigger(*row) for row in cur.fetchall()]


def create_triggers(cur: Cursor, database: str, triggers: list[Trigger]) -> None:
    cur.execute(f"USE {quote(database)}")
    for trigger in triggers:
        cur.execute("SET SESSION sql_mode = %s", (trigger.sql_mode,))
        cur.execute(trigger.create_sql())
