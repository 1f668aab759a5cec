"""PostgreSQL fingerprints and schema inventory, read in the session's current transaction (snapshot)."""

from __future__ import annotations

import re
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping

import psycopg

from opsctl.manifest import Census, TableStats
from opsctl.sources import census, pg_fingerprint
from opsctl.sources.pg_client import TABLES, first_row, fixed_search_path, row_counts

_USER_SCHEMA = """n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'"""
_NOT_EXTENSION = """NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = '{catalog}'::regclass
  AND d.objid = {oid} AND d.deptype = 'e')"""
_INVENTORY = f"""
SELECT CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'table' WHEN 'v' THEN 'view'
       WHEN 'm' THEN 'materialized view' WHEN 'S' THEN 'sequence' WHEN 'f' THEN 'foreign table'
       ELSE 'index' END, n.nspname || '.' || c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'i', 'I') AND {_USER_SCHEMA}
  AND {_NOT_EXTENSION.format(catalog='pg_class', oid='c.oid')}
UNION ALL
SELECT CASE p.prokind WHEN 'p' THEN 'procedure' WHEN 'a' THEN 'aggregate' ELSE 'function' END,
       n.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')'
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE {_USER_SCHEMA} AND {_NOT_EXTENSION.format(catalog='pg_proc', oid='p.oid')}
UNION ALL
SELECT 'trigger', n.nspname || '.' || c.relname || '.' || t.tgname
FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE NOT t.tgisinternal AND {_USER_SCHEMA}
UNION ALL
SELECT 'constraint', n.nspname || '.' || c.relname || '.' || co.conname
FROM pg_constraint co JOIN pg_class c ON c.oid = co.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE {_USER_SCHEMA} AND co.contype <> 'n'
"""
# NOT NULL constraints ('n') are catalogued only from PostgreSQL 18 on: left out, so a restore onto
# another major version lists the same objects.
# Sequences live outside transactions: their values are read before pg_dump starts, and a restore
# must bring back at least that much (pg_dump reads them a moment later, maybe after more calls).
_SEQUENCES = """
SELECT schemaname || '.' || sequencename, CASE WHEN increment_by > 0 THEN last_value ELSE -last_value END
FROM pg_sequences WHERE schemaname NOT IN ('pg_catalog', 'information_schema')
"""
_LARGE_OBJECTS = """
SELECT count(*), coalesce(sum(('x' || substr(md5(%(salt)s || l.oid::text || ':' || md5(lo_get(l.oid))), 1, 16))
                              ::bit(64)::bigint), 0)::text
FROM pg_largeobject_metadata l
"""
# The text form of a value depends on these settings: fix them, so both ends hash the same text.
_SETTINGS = ("SET LOCAL timezone = 'UTC'", "SET LOCAL datestyle = 'ISO, YMD'", "SET LOCAL intervalstyle = 'postgres'",
             "SET LOCAL extra_float_digits = 3", "SET LOCAL bytea_output = 'hex'", "SET LOCAL lc_monetary = 'C'",
             "SET LOCAL quote_all_identifiers = off")


def sequence_values(conn: psycopg.Connection) -> dict[str, int | None]:
    """Each sequence's last value (negated for descending ones); None: never used."""
    return {f"sequence {name}": value for name, value in conn.execute(_SEQUENCES).fetchall()}


def take_census(conn: psycopg.Connection, salt: str, sequences: dict[str, int | None],
                methods: Mapping[str, str | None] | None = None, backup_version: str | None = None) -> Census:
    """Counts and fingerprints of every table, the schema inventory and the large objects, in one transaction.

    `methods` (table -> how its backup fingerprint was taken) and the backup's server version make a
    restore hash each table as its backup did; without them, every table is hashed the current way.
    """
    if not salt:
        return census.counts_only(row_counts(conn))
    for statement in _SETTINGS:
        conn.execute(statement)
    tables = tuple(_scan(conn, salt, methods, _major(backup_version)))
    count, hash_sum = first_row(conn.execute(_LARGE_OBJECTS, {"salt": salt}))
    values = {**sequences, "large objects": f"{count}:{census.fingerprint(salt, count, hash_sum)}"}
    return Census(tables=tables, schema=inventory(conn), values=values, salt=salt)


def inventory(conn: psycopg.Connection) -> dict[str, list[str]]:
    """Kind -> sorted names of the schema objects a restore must bring back.

    A function's argument types print schema-qualified unless on the search_path: the default one
    ("public") is set, so a role's own search_path changes no name.
    """
    found: dict[str, list[str]] = defaultdict(list)
    with fixed_search_path(conn, "public"):
        rows = conn.execute(_INVENTORY).fetchall()
    for kind, name in rows:
        found[kind].append(name)
    return {kind: sorted(names) for kind, names in sorted(found.items())}


def _scan(conn: psycopg.Connection, salt: str, methods: Mapping[str, str | None] | None,
          backup_major: int | None) -> Iterator[TableStats]:
    """Counts and fingerprints of every table holding rows."""
    current = pg_fingerprint.default_method(conn)
    for schema, table in conn.execute(TABLES).fetchall():
        started, name = time.monotonic(), f"{schema}.{table}"
        method = (methods or {}).get(name, current)
        found = pg_fingerprint.hash_table(conn, schema, table, salt, method, backup_major=backup_major)
        yield census.table(name, salt, found, started)


def _major(version: str | None) -> int | None:
    """15 of "15.18 (Debian 15.18-0+deb12u1)"; None when unknown."""
    found = re.match(r"\d+", version or "")  # also "13beta1", "16devel"
    return int(found.group()) if found else None
