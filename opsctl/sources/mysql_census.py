"""MySQL/MariaDB fingerprints and schema inventory, read in the session's current transaction (snapshot)."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Mapping
from typing import TYPE_CHECKING

from opsctl.manifest import Census, TableStats
from opsctl.sources import census, mysql_fingerprint
from opsctl.sources.census import TableHash
from opsctl.sources.mysql_client import quote

if TYPE_CHECKING:
    from pymysql.cursors import Cursor

_INVENTORY = """
SELECT CASE TABLE_TYPE WHEN 'VIEW' THEN 'view' WHEN 'SEQUENCE' THEN 'sequence' ELSE 'table' END, TABLE_NAME
FROM information_schema.TABLES WHERE TABLE_SCHEMA = %(db)s
UNION ALL SELECT LOWER(ROUTINE_TYPE), ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = %(db)s
UNION ALL SELECT 'trigger', CONCAT(EVENT_OBJECT_TABLE, '.', TRIGGER_NAME) FROM information_schema.TRIGGERS
  WHERE TRIGGER_SCHEMA = %(db)s
UNION ALL SELECT 'event', EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %(db)s
UNION ALL SELECT DISTINCT 'index', CONCAT(TABLE_NAME, '.', INDEX_NAME) FROM information_schema.STATISTICS
  WHERE TABLE_SCHEMA = %(db)s
UNION ALL SELECT 'constraint', CONCAT(TABLE_NAME, '.', CONSTRAINT_NAME, ' (', CONSTRAINT_TYPE, ')')
  FROM information_schema.TABLE_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = %(db)s
"""
_SEQUENCES = "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_TYPE = 'SEQUENCE'"


def sequence_values(cur: Cursor, database: str) -> dict[str, int]:
    """The next value each sequence hands out (read before the dump starts: sequences are not transactional)."""
    cur.execute(_SEQUENCES, (database,))
    values: dict[str, int] = {}
    for (name,) in cur.fetchall():
        cur.execute(f"SELECT next_not_cached_value FROM {quote(database)}.{quote(name)}")
        values[f"sequence {name}"] = int(cur.fetchone()[0])
    return values


def take_census(cur: Cursor, database: str, tables: list[str], uncounted: tuple[str, ...], salt: str, *,
                sequences: dict[str, int], methods: Mapping[str, str | None] | None = None) -> Census:
    """Counts and fingerprints of the tables (uncounted ones listed without either), plus the inventory.

    `methods` (table -> how its backup fingerprint was taken) makes a restore hash each table as its
    backup did; without it, every table is hashed the current way.
    """
    if salt:  # the text form of TIMESTAMP and CHAR values depends on these
        cur.execute("SET SESSION time_zone = '+00:00'")
        cur.execute("SET SESSION sql_mode = TRIM(BOTH ',' FROM REPLACE(CONCAT(',', @@SESSION.sql_mode, ','), "
                    "',PAD_CHAR_TO_FULL_LENGTH,', ','))")
    found = [TableStats(name=name, rows=None) if name in uncounted
             else _table(cur, database, name, salt, methods) for name in tables]
    if not salt:
        return census.counts_only(tuple(found))
    values: dict[str, int | str | None] = dict(sequences)
    return Census(tables=tuple(found), schema=inventory(cur, database), values=values, salt=salt)


def inventory(cur: Cursor, database: str) -> dict[str, list[str]]:
    """Kind -> sorted names of the schema objects a restore must bring back."""
    found: dict[str, list[str]] = defaultdict(list)
    cur.execute(_INVENTORY, {"db": database})
    for kind, name in cur.fetchall():
        found[kind].append(name)
    return {kind: sorted(names) for kind, names in sorted(found.items())}


def _table(cur: Cursor, database: str, name: str, salt: str, methods: Mapping[str, str | None] | None) -> TableStats:
    """At backup (no methods) hashed the current way and measured; at a restore, as the backup did."""
    started = time.monotonic()
    if not salt:
        cur.execute(f"SELECT count(*) FROM {quote(database)}.{quote(name)}")
        return census.table(name, salt, TableHash(cur.fetchone()[0], None, None), started)
    method = (methods or {}).get(name, mysql_fingerprint.VALUES)
    found = mysql_fingerprint.hash_table(cur, database, name, salt, method, measure=methods is None)
    return census.table(name, salt, found, started)
