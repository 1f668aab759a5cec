"""How a MySQL/MariaDB table's rows are hashed for its fingerprint: by their exact values.

Each value is hashed as its bytes (NULL-safe, charset-free), except two kinds:
- a system-versioned table's ROW START and ROW END columns are left out: a restore stamps them anew;
- FLOAT is hashed by its exact value. mariadb-dump writes FLOAT with 6 significant digits, so a
  FLOAT holding more precision comes back rounded from any restore: the fingerprint must see that,
  and the backup counts such rows so the admin hears of it the night it happens, not at a restore.

The way a table was hashed is recorded per table in the manifest. Backups made before methods were
recorded (method None) hashed every column by its text form; they are reproduced that way, except
for a system-versioned table's row start/end, which no restore brings back.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

import pymysql

from opsctl.manifest import TableStats
from opsctl.sources.census import TableHash
from opsctl.sources.mysql_client import quote

if TYPE_CHECKING:
    from pymysql.cursors import Cursor

log = logging.getLogger(__name__)
VALUES = "mysql-values-1"
"""Every column but row start/end, FLOAT by its exact value."""
UNREPRODUCIBLE = "mysql-legacy-unreproducible"
"""Not a way to hash: an old fingerprint included row start/end columns, which a restore changes."""
_COLUMNS = ("SELECT COLUMN_NAME, DATA_TYPE, IFNULL(GENERATION_EXPRESSION IN ('ROW START', 'ROW END'), 0) "
            "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION")


def hash_table(cur: Cursor, database: str, name: str, salt: str, method: str | None, *,
               measure: bool = True) -> TableHash:
    """Hash a table's rows the way `method` says (None: as opsctl did before methods were recorded).

    `measure` (at backup) also counts the rows whose FLOAT the dump rounds and finds the widest row.
    """
    relation = f"{quote(database)}.{quote(name)}"
    cur.execute(_COLUMNS, (database, name))
    columns = [(column, kind.lower(), bool(period)) for column, kind, period in cur.fetchall()]
    restamped = any(period for _, _, period in columns)
    if method not in (None, VALUES) or (method is None and restamped):
        cur.execute(f"SELECT count(*) FROM {relation}")
        return TableHash(cur.fetchone()[0], None, UNREPRODUCIBLE)
    values = ", ".join(_value(column, kind, method) for column, kind, period in columns if not period)
    # The salt is hex (checked when the manifest is read): inlined, so a '%' in a name is never a placeholder.
    if not all(c in "0123456789abcdef" for c in salt):
        raise ValueError("the fingerprint salt must be hex")
    row_hash = f"CAST(CONV(SUBSTR(MD5(CONCAT_WS(0x1f, '{salt}', {values})), 1, 15), 16, 10) AS UNSIGNED)"
    floats = [quote(column) for column, kind, _ in columns if kind == "float"] if measure else []
    widest = "COALESCE(MAX(" + " + ".join(f"COALESCE(LENGTH({quote(c)}), 0)" for c, _, _ in columns) + "), 0)" \
        if measure else "0"
    try:
        cur.execute(f"SELECT count(*), COALESCE(SUM({row_hash}), 0), {widest}, COALESCE(SUM({_rounded(floats)}), 0) "
                    f"FROM {relation}")
    except pymysql.err.ProgrammingError:  # CAST(... AS FLOAT) is MariaDB 10.4.5+ / MySQL 8.0.17+
        if not floats:
            raise
        log.warning("table %s: this server cannot tell whether mariadb-dump rounds its FLOAT values (that needs "
                    "MariaDB 10.4.5+ or MySQL 8.0.17+); if verification later reports the table, store them as "
                    "DOUBLE or DECIMAL", name)
        cur.execute(f"SELECT count(*), COALESCE(SUM({row_hash}), 0), {widest}, 0 FROM {relation}")
    rows, hash_sum, widest_row, rounded_rows = cur.fetchone()
    return TableHash(rows, str(hash_sum), method, int(rounded_rows), int(widest_row))


def _rounded(floats: list[str]) -> str:
    """True for a row with a FLOAT whose 6-digit text (what the dump writes) does not read back as the same value."""
    return " OR ".join(f"{c} <> CAST(CAST({c} AS CHAR) AS FLOAT)" for c in floats) or "FALSE"


def rounding_warnings(database: str, tables: Iterable[TableStats]) -> tuple[str, ...]:
    """One warning per table holding FLOAT values that mariadb-dump writes rounded."""
    return tuple(f"database {database}, table {t.name}: {t.rounded} row(s) hold FLOAT values with more precision "
                 "than mariadb-dump writes (6 significant digits), so any restore of this backup brings them back "
                 "rounded and verification reports the table. Store such values as DOUBLE or DECIMAL."
                 for t in tables if t.rounded)


def packet_warnings(database: str, tables: Iterable[TableStats], max_packet: int) -> tuple[str, ...]:
    """One warning per table with a row whose INSERT in the dump (blobs in hex: twice their size) exceeds the packet."""
    return tuple(f"database {database}, table {t.name}: its largest row is {t.widest_row / 2**20:.1f} MiB, so its "
                 f"INSERT in the dump is about {_needed(t.widest_row) / 2**20:.0f} MiB, more than this server's "
                 f"max_allowed_packet ({max_packet / 2**20:.0f} MiB): a restore fails unless the restore server "
                 f"allows it first: SET GLOBAL max_allowed_packet = {_needed(t.widest_row)};"
                 for t in tables if max_packet and _needed(t.widest_row) > max_packet)


def _needed(widest_row: int) -> int:
    """Bytes a row's INSERT statement can take: hex doubles it, and the statement adds a little."""
    return 2 * widest_row + 64 * 1024


def _value(column: str, kind: str, method: str | None) -> str:
    """A value as bytes with a 'v' before it, NULL as a bare 'N'."""
    value = quote(column)
    if kind == "float" and method is not None:
        value = f"({value} + 0e0)"  # as a DOUBLE: every digit the FLOAT holds
    return f"IF({quote(column)} IS NULL, 'N', CONCAT('v', CAST({value} AS BINARY)))"
