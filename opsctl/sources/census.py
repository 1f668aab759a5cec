"""Fingerprints shared by every engine: the salt, the switch, and how a row-hash sum becomes a fingerprint.

A table's fingerprint is a multiset hash: the sum of a 64-bit hash of each row, so row order does not
matter and a lost duplicate row changes it. The sum is salted per backup and hashed again, so a
fingerprint never reveals a row, even of a one-row table, to someone without the salt.

Vocabulary: a *census* (`Census`, made by `take_census`) is the whole measurement of a database in one
snapshot: per table a `TableStats` (rows, fingerprint, how it was hashed), the schema inventory, and
values such as sequences. *Row counts* (`row_counts`, `counts_only`) are a census without fingerprints.
A *fingerprint* is one table's salted row-hash sum. `DumpFacts` (the manifest's "facts") is a census
plus the dump's description; a `CensusPlan` says what a MariaDB census measures.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from opsctl.manifest import Census, TableStats


def new_salt() -> str:
    """A fresh salt for one backup (engines call it through this module, so a test harness can replace it)."""
    return secrets.token_hex(8)


def fingerprint(salt: str, rows: int, hash_sum: int | str) -> str:
    """The stored fingerprint of a table: its row-hash sum, salted and hashed again."""
    return hashlib.sha256(f"{salt}:{rows}:{hash_sum}".encode()).hexdigest()[:32]


@dataclass(frozen=True)
class TableHash:
    """What hashing one table found: rows, the sum of their hashes (None: not comparable) and how it was taken."""

    rows: int
    hash_sum: int | str | None
    method: str | None
    rounded: int = 0
    widest_row: int = 0


def table(name: str, salt: str, found: TableHash, started: float) -> TableStats:
    """A table's stats (timed from `started`, a time.monotonic()); no fingerprint when none was taken."""
    return TableStats(name=name, rows=found.rows,
                      fingerprint=fingerprint(salt, found.rows, found.hash_sum)
                      if salt and found.hash_sum is not None else None,
                      seconds=round(time.monotonic() - started, 3), method=found.method if salt else None,
                      rounded=found.rounded, widest_row=found.widest_row)


def counts_only(tables: tuple[TableStats, ...]) -> Census:
    """A census of row counts alone (fingerprints switched off)."""
    return Census(tables=tables)
