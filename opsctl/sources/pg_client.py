"""Connecting to PostgreSQL: psycopg sessions in-process, and credentials for the command-line tools."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from opsctl.leftovers import memory_folder, scratch_folder
from opsctl.manifest import TableStats
from opsctl.process import tool_environment
from opsctl.sources import Tls
from opsctl.sources.errors import (
    DatabaseAuthFailed,
    DatabaseError,
    DatabaseMissing,
    DatabaseUnreachable,
    ToolMissing,
    database_error_text,
)

# Leaf tables that hold rows (partitions included, partitioned parents excluded: their rows live
# in the partitions), leaving out system schemas and tables owned by extensions.
TABLES = """
SELECT n.nspname, c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1, 2
"""
_USER_RELATIONS = """
SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
"""


@dataclass(frozen=True)
class PgServer:
    """How to reach one PostgreSQL server as one role."""

    host: str
    port: int
    user: str
    password: str | None = field(default=None, repr=False)
    tls: Tls = field(default_factory=Tls)

    @property
    def display(self) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}"

    def connect(self, database: str, autocommit: bool = False) -> psycopg.Connection:
        """A session with a clear error for the usual failures (down, wrong password, no database, TLS)."""
        try:
            return psycopg.connect(
                host=self.host, port=self.port, user=self.user, dbname=database, password=self.password,
                application_name="opsctl", connect_timeout=10, autocommit=autocommit, **self._tls_settings(),
            )
        except psycopg.OperationalError as exc:
            raise self._connect_error(database, exc) from None

    def _tls_settings(self) -> dict[str, Any]:
        """sslmode and sslrootcert as libpq names them; passed explicitly, they win over PGSSLMODE/PGSSLROOTCERT."""
        if self.tls.mode is None:
            return {}  # loopback or a socket with no tls in the policy: libpq's default, as before
        settings: dict[str, Any] = {"sslmode": self.tls.mode}
        if self.tls.ca_file is not None:
            settings["sslrootcert"] = str(self.tls.ca_file)
        return settings

    def tls_protocol(self, conn: psycopg.Connection) -> str | None:
        """The TLS version of a session ("TLSv1.3"), or None when it is not encrypted."""
        row = conn.execute("SELECT version FROM pg_stat_ssl WHERE pid = pg_backend_pid() AND ssl").fetchone()
        return row[0] if row else None

    def _connect_error(self, database: str, exc: psycopg.OperationalError) -> Exception:
        lowered = str(exc).lower()  # matched here only: the message shows the redacted first line
        where = f"{self.display}/{database}"
        refused = self.tls.refusal(lowered, "PostgreSQL", where, self.host, database_error_text(exc))
        if refused is not None:
            return refused
        if any(m in lowered for m in ("password authentication failed", "no password supplied", "pg_hba.conf",
                                      "permission denied for database")):
            return DatabaseAuthFailed(f"PostgreSQL refused the login of user {self.user} at {where}",
                                      "check the policy's database.password source and the server's pg_hba.conf")
        if "does not exist" in lowered and "database" in lowered:
            return DatabaseMissing(f"database {database} does not exist at {self.display}",
                                   "check database.names in the policy")
        return DatabaseUnreachable(f"cannot connect to PostgreSQL at {where}: {database_error_text(exc)}",
                                   "check that the server is running and database.host/port are right")

    @contextmanager
    def tool_environment(self, database: str) -> Iterator[dict[str, str]]:
        """Environment for pg_dump/pg_restore: connection by PG* variables, password by a 0600 passfile."""
        # A stray PGPASSWORD would win over the passfile, and a service could change the server. Ambient TLS
        # settings apply only where the policy leaves TLS to libpq's default (loopback, sockets): the policy wins.
        env = tool_environment("PGPASSFILE", "PGSERVICE")
        env.update(PGHOST=self.host, PGPORT=str(self.port), PGUSER=self.user, PGDATABASE=database,
                   PGAPPNAME="opsctl", PGCONNECT_TIMEOUT="10")
        env.update({f"PG{name.upper()}": value for name, value in self._tls_settings().items()})
        if self.password is None:
            yield env
            return
        # In memory, private, and marked: a killed run's passfile is removed by the next run (leftovers.py).
        with scratch_folder("pg", memory_folder()) as folder:
            fd = os.open(folder / "pgpass", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(f"*:*:*:*:{_escape(self.password)}\n")
            env["PGPASSFILE"] = str(folder / "pgpass")
            yield env


def first_row(cursor: psycopg.Cursor[TupleRow]) -> TupleRow:
    """The row of a query that always returns one (count(*), SHOW, ...)."""
    row = cursor.fetchone()
    if row is None:
        raise DatabaseError("PostgreSQL returned no row where one is always expected")
    return row


@contextmanager
def fixed_search_path(conn: psycopg.Connection, path: str) -> Iterator[None]:
    """A fixed search_path for the queries in the block: type and reg* names print by it, whatever the role's."""
    previous = first_row(conn.execute("SHOW search_path"))[0]
    conn.execute("SELECT set_config('search_path', %s, true)", (path,))
    yield  # no finally: after a failed query the transaction is over, and so is the setting
    conn.execute("SELECT set_config('search_path', %s, true)", (previous,))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


def tool(name: str) -> str:
    """The path of a PostgreSQL client tool, or a clear error saying how to install it."""
    found = shutil.which(name)
    if found is None:
        raise ToolMissing(f"{name} is not installed", "install it: sudo apt-get install postgresql-client")
    return found


def row_counts(conn: psycopg.Connection) -> tuple[TableStats, ...]:
    """Exact row counts of every user table, read in the connection's current transaction."""
    stats = []
    for schema, table in conn.execute(TABLES).fetchall():
        query = sql.SQL("SELECT count(*) FROM ONLY {}.{}").format(sql.Identifier(schema), sql.Identifier(table))
        stats.append(TableStats(name=f"{schema}.{table}", rows=first_row(conn.execute(query))[0]))
    return tuple(stats)


def database_properties(conn: psycopg.Connection) -> dict[str, str]:
    """Encoding and locale of the connected database: a restore recreates them."""
    encoding, collate, ctype = first_row(conn.execute(
        "SELECT pg_encoding_to_char(encoding), datcollate, datctype FROM pg_database "
        "WHERE datname = current_database()"))
    return {"pg-encoding": encoding, "pg-collate": collate, "pg-ctype": ctype}


def create_database_sql(name: str, properties: dict[str, str]) -> sql.Composed:
    options: list[sql.Composable] = [sql.SQL("TEMPLATE template0")]
    for key, keyword in (("pg-encoding", "ENCODING"), ("pg-collate", "LC_COLLATE"), ("pg-ctype", "LC_CTYPE")):
        if properties.get(key):
            options.append(sql.SQL(keyword + " {}").format(sql.Literal(properties[key])))
    return sql.SQL("CREATE DATABASE {} ").format(sql.Identifier(name)) + sql.SQL(" ").join(options)


def has_user_relations(conn: psycopg.Connection) -> bool:
    relations: int = first_row(conn.execute(_USER_RELATIONS))[0]
    return relations > 0
