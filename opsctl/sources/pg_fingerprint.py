"""How a PostgreSQL table's rows are hashed for its fingerprint: by their values, never by catalog OIDs or layout.

A restore renumbers catalog OIDs, may put an inheriting table's columns in another order and drops
the dropped columns for good, so a row hash must depend on none of them. Each column is hashed by
its type's own hash function where that is exact and independent of the catalog (integers, text
under the "C" collation, timestamps, uuid, bytea, ...), and by its text form otherwise: enums,
reg* types, arrays, composites, ranges and domains over them, floats, numeric, intervals, json
and every type without a hash. Columns are taken in the order of their names.

The way a table was hashed is recorded per table in the manifest (`TableStats.method`), so a
restore recomputes each fingerprint the way it was taken. Backups made before methods were
recorded (method None) hashed the whole row with `hash_record_extended`, which for enum and reg*
values hashes catalog OIDs and follows the column order: such a table cannot be compared after a
restore, and says so.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from opsctl.sources.census import TableHash
from opsctl.sources.pg_client import first_row, fixed_search_path

VALUES = "pg-values-1"
"""hash_record_extended over the columns' values (PostgreSQL 14 and later)."""
VALUES_MD5 = "pg-values-md5-1"
"""md5 of the same values' text, for servers without hash_record_extended."""
UNREPRODUCIBLE = "pg-legacy-unreproducible"
"""Not a way to hash: an old fingerprint hashed catalog OIDs or a column order that a restore changes."""

# Types whose hash function is exact (equal hash input only for identical values) and reads no
# catalog OID, by name in pg_catalog (so no type of the role's search_path stands in for them).
# Everything else is hashed by its text form.
_EXACT = ("bool", "int2", "int4", "int8", "oid", "date", "time", "timetz", "timestamp", "timestamptz", "uuid",
          "bytea", "char", "inet", "cidr", "macaddr", "macaddr8", "pg_lsn")
_COLLATABLE = ("text", "varchar", "bpchar", "name")  # exact too, once the "C" collation compares bytes
_BUILTIN = "SELECT to_regtype('pg_catalog.' || quote_ident(n)) FROM unnest({}::text[]) AS n"
_COLUMNS = f"""
WITH RECURSIVE col AS (
  SELECT a.attname, a.atttypid AS base
  FROM pg_attribute a WHERE a.attrelid = %(rel)s AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
  SELECT col.attname, ty.typbasetype FROM col JOIN pg_type ty ON ty.oid = col.base WHERE ty.typtype = 'd'
)
SELECT col.attname, col.base IN ({_BUILTIN.format("%(exact)s")}), col.base IN ({_BUILTIN.format("%(collatable)s")})
FROM col JOIN pg_type ty ON ty.oid = col.base WHERE ty.typtype <> 'd'
ORDER BY convert_to(col.attname, 'UTF8')
"""
# Does any column's type reach an enum or a type whose hash reads catalog OIDs (reg*, aclitem),
# through domains, arrays, composites and ranges? Does the table inherit columns and have columns
# of its own, whose relative order a restore may change?
_UNREPRODUCIBLE = f"""
WITH RECURSIVE part(t) AS (
  SELECT a.atttypid FROM pg_attribute a WHERE a.attrelid = %(rel)s AND a.attnum > 0 AND NOT a.attisdropped
UNION
  SELECT inner_t FROM part JOIN pg_type ty ON ty.oid = part.t, LATERAL (
    SELECT ty.typbasetype WHERE ty.typtype = 'd'
    UNION ALL SELECT ty.typelem WHERE ty.typcategory = 'A' AND ty.typelem <> 0
    UNION ALL SELECT a.atttypid FROM pg_attribute a
      WHERE ty.typtype = 'c' AND a.attrelid = ty.typrelid AND a.attnum > 0 AND NOT a.attisdropped
    UNION ALL SELECT r.rngsubtype FROM pg_range r WHERE r.rngtypid = ty.oid {{multirange}}
  ) AS inside(inner_t)
)
SELECT EXISTS (SELECT 1 FROM part JOIN pg_type ty ON ty.oid = part.t
               WHERE ty.typtype = 'e' OR part.t IN ({_BUILTIN.format("%(catalog_bound)s")})),
       EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = %(rel)s AND a.attnum > 0 AND a.attinhcount > 0)
       AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = %(rel)s AND a.attnum > 0 AND a.attislocal
                   AND NOT a.attisdropped)
"""
HASH_RECORD_EXTENDED_MAJOR = 14
"""The first PostgreSQL major version with hash_record_extended."""
_HASH_RECORD_EXTENDED_SINCE = HASH_RECORD_EXTENDED_MAJOR * 10000  # as a server_version_num
_MULTIRANGE_SINCE = 140000  # server_version_num of PostgreSQL 14, the first with multirange types
_CATALOG_BOUND = ("regclass", "regtype", "regproc", "regprocedure", "regoper", "regoperator", "regconfig",
                  "regdictionary", "regnamespace", "regrole", "regcollation", "aclitem")


def default_method(conn: psycopg.Connection) -> str:
    """How this server hashes a table at backup time."""
    return VALUES if conn.info.server_version >= _HASH_RECORD_EXTENDED_SINCE else VALUES_MD5


def hash_table(conn: psycopg.Connection, schema: str, table: str, salt: str, method: str | None, *,
               backup_major: int | None = None) -> TableHash:
    """Hash a table's rows the way `method` says (None: as opsctl did before methods were recorded, on a
    server of major version `backup_major`); a way this server cannot reproduce gives no hash."""
    relation = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))
    rel = first_row(conn.execute("SELECT %s::regclass::oid", (relation.as_string(conn),)))[0]
    if method is None:
        return _legacy(conn, relation, rel, salt, backup_major)
    without_hash = conn.info.server_version < _HASH_RECORD_EXTENDED_SINCE
    if method not in (VALUES, VALUES_MD5) or (method == VALUES and without_hash):
        return TableHash(_count(conn, relation), None, UNREPRODUCIBLE)
    values = sql.SQL("ROW({})").format(sql.SQL(", ").join(_column_values(conn, rel)))
    row_hash: sql.Composable
    if method == VALUES:
        row_hash = sql.SQL("hash_record_extended({}, {})").format(values, sql.Literal(_seed(salt)))
    else:
        row_hash = _md5_hash(sql.SQL("{}::text").format(values), salt)
    with fixed_search_path(conn, "pg_catalog"):  # reg* values print schema-qualified, whatever the role's path
        rows, hash_sum = first_row(conn.execute(_sum_query(row_hash, relation)))
    return TableHash(rows, hash_sum, method)


def _column_values(conn: psycopg.Connection, rel: int) -> list[sql.Composable]:
    found = conn.execute(_COLUMNS, {"rel": rel, "exact": list(_EXACT), "collatable": list(_COLLATABLE)}).fetchall()
    values: list[sql.Composable] = []
    for name, exact, collatable in found:
        column = sql.SQL("opsctl_r.{}").format(sql.Identifier(name))
        if collatable:
            values.append(sql.SQL('{} COLLATE "C"').format(column))
        elif exact:
            values.append(column)
        else:
            values.append(sql.SQL('{}::text COLLATE "C"').format(column))
    return values


def _legacy(conn: psycopg.Connection, relation: sql.Composable, rel: int, salt: str,
            backup_major: int | None) -> TableHash:
    """The whole-row hash of older backups; refused where it depended on catalog OIDs or the column order."""
    with fixed_search_path(conn, "public"):  # the default path, under which old backups hashed reg* text
        found = _legacy_hash(conn, relation, salt, backup_major)
    if found is None:
        return TableHash(_count(conn, relation), None, UNREPRODUCIBLE)
    rows, hash_sum, by_type_hash = found
    multirange = "OR r.rngmultitypid = ty.oid" if conn.info.server_version >= _MULTIRANGE_SINCE else ""
    catalog_bound, reordered = first_row(conn.execute(_UNREPRODUCIBLE.format(multirange=multirange),
                                                      {"rel": rel, "catalog_bound": list(_CATALOG_BOUND)}))
    if reordered or (catalog_bound and by_type_hash):
        return TableHash(rows, None, UNREPRODUCIBLE)
    return TableHash(rows, hash_sum, None)


def _legacy_hash(conn: psycopg.Connection, relation: sql.Composable, salt: str,
                 backup_major: int | None) -> tuple[int, str, bool] | None:
    """Rows, hash sum, and whether the types' own hash functions were used, as the old backup did.

    On PostgreSQL 14+ it used hash_record_extended, or md5 of each row's text when a column type had
    no hash function. None: it used hash_record_extended, and this older server has none.
    """
    if backup_major is None or backup_major >= HASH_RECORD_EXTENDED_MAJOR:
        if conn.info.server_version < _HASH_RECORD_EXTENDED_SINCE:
            return None
        fast = sql.SQL("hash_record_extended(opsctl_r.*, {})").format(sql.Literal(_seed(salt)))
        try:
            with conn.transaction():  # a savepoint: the snapshot's transaction survives the fallback
                rows, hash_sum = first_row(conn.execute(_sum_query(fast, relation)))
                return rows, hash_sum, True
        except psycopg.errors.UndefinedFunction:
            pass
    slow = _md5_hash(sql.SQL("(opsctl_r.*)::text"), salt)
    rows, hash_sum = first_row(conn.execute(_sum_query(slow, relation)))
    return rows, hash_sum, False


def _sum_query(row_hash: sql.Composable, relation: sql.Composable) -> sql.Composed:
    return sql.SQL("SELECT count(*), coalesce(sum({}), 0)::text FROM ONLY {} AS opsctl_r").format(row_hash, relation)


def _md5_hash(text: sql.Composable, salt: str) -> sql.Composable:
    return sql.SQL("('x' || substr(md5({} || {}), 1, 16))::bit(64)::bigint").format(sql.Literal(salt), text)


def _count(conn: psycopg.Connection, relation: sql.Composable) -> int:
    rows: int = first_row(conn.execute(sql.SQL("SELECT count(*) FROM ONLY {}").format(relation)))[0]
    return rows


def _seed(salt: str) -> int:
    return int(salt[:15], 16)
