"""opsctl verify on MariaDB: awkward data round trip, each tampering named, no row value in any output."""

from __future__ import annotations

from tests.conftest import MY_PASSWORD, MY_USER
from tests.integration.test_mysql import fill_awkward
from tests.support.verification import CANARY, assert_detected, assert_no_canary, latest_report, verify

MORE = [
    "CREATE TABLE no_key (label VARCHAR(20), amount INT, note VARCHAR(20)) ENGINE=InnoDB",
    f"INSERT INTO no_key VALUES ('twin', 1, NULL), ('twin', 1, NULL), ('{CANARY}', 2, '{CANARY}')",
    "CREATE TABLE `empty ü table` (v INT) ENGINE=InnoDB",
    "CREATE SEQUENCE invoice_numbers START WITH 1000",
    "SELECT NEXTVAL(invoice_numbers)", "SELECT NEXTVAL(invoice_numbers)",
]
TAMPERING = [
    ("UPDATE `Customer List` SET balance = balance + 1 WHERE id = 1", "table Customer List: same row count"),
    ("DELETE FROM `Customer List` WHERE id = 2", "table Customer List: expected 4 rows, found 3"),
    ("DELETE FROM no_key WHERE label = 'twin' LIMIT 1", "table no_key: expected 3 rows, found 2"),
    ("UPDATE no_key SET note = '' WHERE note IS NULL LIMIT 1", "table no_key: same row count, different content"),
    ("DROP TABLE `empty ü table`", "table empty ü table: missing"),
    ("ALTER SEQUENCE invoice_numbers RESTART WITH 1000", "sequence invoice_numbers: behind the backup"),
    ("DROP TRIGGER `after insert`", "trigger Customer List.after insert: missing"),
]


def test_awkward_round_trip_passes_and_each_tampering_is_named(my_policy, mariadb_server, my_database):
    with mariadb_server.connect(my_database, MY_USER, MY_PASSWORD) as conn:
        fill_awkward(conn)
        with conn.cursor() as cur:
            for statement in MORE:
                cur.execute(statement)
    backup = my_policy.opsctl("backup")
    assert backup.returncode == 0, backup.output
    result = verify(my_policy)
    assert result.returncode == 0, result.output
    tables = {t["name"]: t for t in latest_report(my_policy)["targets"][0]["tables"]}
    assert tables["no_key"]["rows_actual"] == 3 and tables["no_key"]["fingerprint"] == "match"
    with mariadb_server.granted(MY_USER, "UPDATE, DELETE"):  # the backup user may not change rows
        for tamper, names in TAMPERING:
            assert_detected(my_policy, tamper, names)
    with mariadb_server.connect() as conn, conn.cursor() as cur:
        cur.execute("SHOW DATABASES LIKE 'opsctl\\_verify%'")
        assert cur.fetchall() == ()
    assert_no_canary(my_policy, result.output, backup.output)
