"""The MariaDB corpus: loading and copying it as opsctl would, and one value changed per column in a transaction."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from opsctl.sources.mysql_client import quote
from tests.support import corpus

_COLUMNS = """
SELECT c.TABLE_NAME, c.COLUMN_NAME FROM information_schema.COLUMNS c
JOIN information_schema.TABLES t ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME
WHERE c.TABLE_SCHEMA = %s AND t.ENGINE = 'InnoDB' AND c.IS_GENERATED = 'NEVER'
  AND EXISTS (SELECT 1 FROM information_schema.COLUMNS k
              WHERE k.TABLE_SCHEMA = c.TABLE_SCHEMA AND k.TABLE_NAME = c.TABLE_NAME AND k.COLUMN_NAME = 'id')
ORDER BY 1, 2
"""


def client(server, database: str) -> list[str]:
    return [shutil.which("mariadb") or "mysql", f"--socket={server.socket}", "--user=root",
            "--default-character-set=utf8mb4", "--batch", database]


def load(server, database: str) -> None:
    subprocess.run(client(server, database), input=corpus.text("mariadb.sql").encode(), capture_output=True,
                   check=True)


def copy_database(server, database: str) -> str:
    """mariadb-dump | mariadb into a new database, as opsctl backs up and restores; returns its name."""
    copy = "copy_" + uuid.uuid4().hex[:8]
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {copy}")
    dump = subprocess.run([shutil.which("mariadb-dump") or "mysqldump", f"--socket={server.socket}", "--user=root",
                           "--single-transaction", "--hex-blob", "--routines", "--events", "--triggers", database],
                          capture_output=True, check=True).stdout
    subprocess.run(client(server, copy), input=dump, capture_output=True, check=True)
    return copy


def columns(cur, database: str) -> list[tuple[str, str]]:
    """(table, column) of every stored, writable column of the transactional tables whose rows an id tells apart."""
    cur.execute(_COLUMNS, (database,))
    return list(cur.fetchall())


def unseen_changes(conn, database: str, fingerprint: Callable[[str], str | None]) -> list[str]:
    """Change one value per column, each rolled back after; return the columns whose change went unseen."""
    cur = conn.cursor()

    @contextmanager
    def rolled_back() -> Iterator[None]:
        cur.execute("START TRANSACTION")
        yield
        cur.execute("ROLLBACK")

    return corpus.unseen_changes(columns(cur, database), lambda column: fingerprint(column[0]),
                                 lambda column: _change_one_value(cur, *column), rolled_back)


def _change_one_value(cur, table: str, column: str) -> bool:
    """Give one row another row's value in `column` (rows told apart by their id; the id itself gets +1000)."""
    relation, col = quote(table).replace("%", "%%"), quote(column).replace("%", "%%")  # beside %s placeholders
    cur.execute(f"SELECT a.id, b.id FROM {relation} a JOIN {relation} b "
                f"ON NOT (CAST(a.{col} AS BINARY) <=> CAST(b.{col} AS BINARY)) LIMIT 1", ())
    pair = cur.fetchone()
    if pair is None:
        return False
    if column == "id":
        cur.execute(f"UPDATE {relation} SET id = id + 1000 WHERE id = %s", (pair[0],))
    else:
        cur.execute(f"UPDATE {relation} SET {col} = (SELECT v FROM (SELECT {col} AS v FROM {relation} WHERE id = %s) "
                    f"AS other) WHERE id = %s", (pair[1], pair[0]))
    return True
