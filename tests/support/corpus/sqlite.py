"""The SQLite corpus: loading it, its columns, and one value changed per column inside a rolled-back transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from tests.support import corpus


def load(path: Path) -> None:
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.executescript(corpus.text("sqlite.sql"))


def columns(conn: sqlite3.Connection) -> list[tuple[str, str]]:
    """(table, column) of every stored, writable column (generated ones left out) of every table but shadow tables."""
    tables = [name for (name,) in conn.execute(
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
        "AND name NOT LIKE 'notes\\_%' ESCAPE '\\' ORDER BY name")]
    return [(table, column) for table in tables
            for _, column, _, _, _, _, hidden in conn.execute(f"PRAGMA table_xinfo({_quote(table)})") if hidden == 0]


def unseen_changes(conn: sqlite3.Connection, fingerprint: Callable[[str], str | None]) -> list[str]:
    """Change one value per column, each rolled back after; return the columns whose change went unseen."""

    @contextmanager
    def rolled_back() -> Iterator[None]:
        conn.execute("BEGIN")
        yield
        conn.execute("ROLLBACK")

    return corpus.unseen_changes(columns(conn), lambda column: fingerprint(column[0]),
                                 lambda column: _change_one_value(conn, *column), rolled_back)


def _change_one_value(conn: sqlite3.Connection, table: str, column: str) -> bool:
    """Give one row another row's value (told apart by type too: 1, 1.0 and '1' differ); a key gets a new one."""
    relation, col = _quote(table), _quote(column)
    key = "id" if conn.execute("SELECT 1 FROM sqlite_schema WHERE name = ? AND sql LIKE '%WITHOUT ROWID%'",
                               (table,)).fetchone() else "rowid"
    pair = conn.execute(f"SELECT a.{key}, b.{key} FROM {relation} a, {relation} b "
                        f"WHERE quote(a.{col}) IS NOT quote(b.{col}) LIMIT 1").fetchone()
    if pair is None:
        return False
    try:
        conn.execute(f"UPDATE {relation} SET {col} = (SELECT {col} FROM {relation} WHERE {key} = ?) WHERE {key} = ?",
                     (pair[1], pair[0]))
    except sqlite3.IntegrityError:
        conn.execute(f"UPDATE {relation} SET {col} = CASE WHEN typeof({col}) = 'integer' THEN {col} + 1000 "
                     f"ELSE {col} || 'x' END WHERE {key} = ?", (pair[0],))
    return True


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'
