"""The PostgreSQL corpus: its columns, and one value changed per column inside a savepoint."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql

from tests.support import corpus


def columns(conn: psycopg.Connection) -> Iterator[tuple[str, str, str]]:
    """(schema, table, column) of every stored, writable column of every user table."""
    yield from conn.execute("""
        SELECT n.nspname, c.relname, a.attname FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
          AND n.nspname NOT LIKE 'pg\\_%%' AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
        ORDER BY 1, 2, 3""").fetchall()


def change_one_value(conn: psycopg.Connection, schema: str, table: str, column: str) -> bool:
    """In the open transaction, give one row another row's value in `column` (a key gets +1000); False: all equal."""
    relation = sql.SQL("ONLY {}.{}").format(sql.Identifier(schema), sql.Identifier(table))
    col = sql.Identifier(column)
    pair = conn.execute(sql.SQL("SELECT a.ctid, b.ctid FROM {r} a, {r} b WHERE a.{c}::text IS DISTINCT FROM "
                                "b.{c}::text LIMIT 1").format(r=relation, c=col)).fetchone()
    if pair is None:
        return False
    try:
        with conn.transaction():
            conn.execute(sql.SQL("UPDATE {r} SET {c} = (SELECT {c} FROM {r} WHERE ctid = %s) WHERE ctid = %s")
                         .format(r=relation, c=col), (pair[1], pair[0]))
    except psycopg.errors.UniqueViolation:
        conn.execute(sql.SQL("UPDATE {r} SET {c} = {c} + 1000 WHERE ctid = %s").format(r=relation, c=col), (pair[0],))
    return True


def unseen_changes(conn: psycopg.Connection, columns: list[tuple[str, str, str]],
                   fingerprint: Callable[[str, str], str | None]) -> list[str]:
    """Change one value per column, each in its own rolled-back savepoint; return the columns whose change went
    unseen."""

    @contextmanager
    def rolled_back() -> Iterator[None]:
        with conn.transaction():
            yield
            raise psycopg.Rollback

    return corpus.unseen_changes(columns, lambda column: fingerprint(*column[:2]),
                                 lambda column: change_one_value(conn, *column), rolled_back)
