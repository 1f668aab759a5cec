"""Fingerprints depend on values only: an awkward MariaDB CRM restores with verification on.

The corpus (tests/support/corpus/mariadb.sql) holds every column type family, system-versioned
tables (whose row start and end a restore stamps anew), invisible and generated columns, a
non-transactional table, a value of megabytes and odd names. It must back up, restore and verify,
and any single changed value, in any column, must be caught and name its table.
"""

from __future__ import annotations

from contextlib import closing

from opsctl.actions.fingerprint_check import compare
from opsctl.manifest import Census, TableStats
from opsctl.sources import mysql_census
from opsctl.sources.mysql_client import base_tables
from tests.conftest import MY_USER, write_mysql_policy
from tests.support.corpus import mariadb as corpus
from tests.support.verification import assert_detected, latest_report, verify

SALT = "0123456789abcdef"
TAMPERING = [
    ("UPDATE texts SET ci = 'alice' WHERE id = 1", "table texts: same row count"),
    ("UPDATE numbers SET f = 0.1000001 WHERE id = 3", "table numbers: same row count"),
    ("UPDATE times SET ts = '2026-03-29 01:30:00.123457' WHERE id = 3", "table times: same row count"),
    ("UPDATE no_key SET amount = 2 WHERE label = 'twin' LIMIT 1", "table no_key: same row count"),
    ("UPDATE archive SET note = 'olde' WHERE id = 1", "table archive: same row count"),
    ("UPDATE `Order Items; DROP TABLE x` SET `Ä Ö ü` = 'Ä' WHERE `select` = 1",
     "table Order Items; DROP TABLE x: same row count"),
    ("UPDATE periods SET email = 'x@example.com' WHERE id = 1", "table periods: same row count"),
]


def census_of(server, database: str, expected: Census | None = None, legacy: bool = False) -> Census:
    """The census as at backup time, as a restore takes it against `expected`, or (legacy) as old opsctl took it."""
    with closing(server.connect(database)) as conn, conn.cursor() as cur:
        cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        tables = [name for name, _ in base_tables(cur, database)]
        methods = dict.fromkeys(tables) if legacy else expected.methods() if expected else None
        return mysql_census.take_census(cur, database, tables, (), SALT, sequences={}, methods=methods)


def test_the_corpus_restores_verified_and_each_change_is_named(my_policy, mariadb_server, my_database):
    corpus.load(mariadb_server, my_database)
    # The Aria table is counted and fingerprinted only when the lock is held for the whole dump.
    write_mysql_policy(my_policy, mariadb_server, [my_database], lock_non_transactional=True)
    backup = my_policy.opsctl("backup")
    assert backup.returncode == 0, backup.output
    restored = my_policy.opsctl("restore", "--yes", "--to", f"{my_database}_restored")
    assert restored.returncode == 0, restored.output
    assert "equal the backup, value by value" in restored.output
    checked = verify(my_policy)
    assert checked.returncode == 0, checked.output
    tables = latest_report(my_policy)["targets"][0]["tables"]
    assert {"contacts", "periods", "orders", "attachments", "Order Items; DROP TABLE x"} <= {t["name"] for t in tables}
    assert all(t["fingerprint"] == "match" for t in tables), tables
    with mariadb_server.granted(MY_USER, "UPDATE"):  # the backup user may not change rows
        for tamper, names in TAMPERING:
            assert_detected(my_policy, tamper, names)


def test_every_column_catches_one_changed_value(mariadb_server, my_database):
    corpus.load(mariadb_server, my_database)
    copy = corpus.copy_database(mariadb_server, my_database)
    with closing(mariadb_server.connect(copy, autocommit=False)) as conn:
        with conn.cursor() as cur:
            assert len(corpus.columns(cur, copy)) > 40
            cur.execute("SET SESSION time_zone = '+00:00'")

        def fingerprint(table: str) -> str | None:
            with conn.cursor() as cur:
                return mysql_census._table(cur, copy, table, SALT, None).fingerprint  # hashed as at backup

        assert corpus.unseen_changes(conn, copy, fingerprint) == []


def test_an_old_backup_of_a_system_versioned_table_passes_on_row_counts_and_says_so(mariadb_server, my_database):
    corpus.load(mariadb_server, my_database)
    legacy = census_of(mariadb_server, my_database, Census(tables=(), salt=SALT), legacy=True)
    # An opsctl from before per-table methods recorded no method, and hashed row start/end too: that
    # fingerprint (a stand-in here) can never match a restore, so it is not compared.
    old = Census(tables=tuple(TableStats(t.name, t.rows, t.fingerprint or "0" * 32) for t in legacy.tables),
                 schema=legacy.schema, values=legacy.values, salt=SALT)
    copy = corpus.copy_database(mariadb_server, my_database)
    found = compare(old, census_of(mariadb_server, copy, old))
    assert found.ok, found.problems
    assert [t.name for t in found.tables if not t.comparable] == ["periods"]
    assert all(t.fingerprint_match for t in found.tables if t.comparable)
    assert len(found.notes) == 1 and "table periods: row count checked" in found.notes[0]



def test_float_values_the_dump_rounds_are_warned_of_at_backup_and_named_by_verify(my_policy, mariadb_server,
                                                                                    my_database):
    with mariadb_server.connect(my_database) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE readings (id INT, exact FLOAT, rounded FLOAT)")
        cur.execute("INSERT INTO readings VALUES (1, 0.5, 0.1000001), (2, 1.5, 16777217), (3, 2.5, 0.25)")
    backup = my_policy.opsctl("backup")
    assert backup.returncode == 0, backup.output
    assert "table readings: 2 row(s) hold FLOAT values with more precision than mariadb-dump writes" in \
        " ".join(backup.output.split())
    checked = verify(my_policy)
    assert checked.returncode == 1, checked.output
    assert ("table readings: same row count, different content (fingerprint mismatch); the backup warned that 2 "
            "of its rows hold FLOAT values the dump rounds") in " ".join(checked.stdout.split())


def test_a_row_too_large_for_the_servers_packet_is_warned_of_at_backup_and_its_restore_says_what_to_do(
        my_policy, mariadb_server, my_database):
    with mariadb_server.connect(my_database) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE scans (id INT, page LONGBLOB)")
        cur.execute("INSERT INTO scans VALUES (1, REPEAT('a', 9000000)), (2, 'small')")
    backup = my_policy.opsctl("backup")
    assert backup.returncode == 0, backup.output
    said = " ".join(backup.output.split())
    assert ("table scans: its largest row is 8.6 MiB, so its INSERT in the dump is about 17 MiB, more than this "
            "server's max_allowed_packet (16 MiB)") in said
    assert "SET GLOBAL max_allowed_packet = 18065538;" in said  # 2 x (9,000,000 + the id's 1) + 64 KiB
    restore = my_policy.opsctl("restore", "--yes", "--to", f"{my_database}_restored")
    assert restore.returncode == 1, restore.output
    assert "raise it (SET GLOBAL max_allowed_packet = 1073741824;) and run the restore again" in \
        " ".join(restore.output.split())
