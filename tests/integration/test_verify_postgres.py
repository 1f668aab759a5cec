"""opsctl verify on PostgreSQL: awkward data round trip, each tampering named, writers, permissions, SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import PG_ROLE, PG_ROLE_PASSWORD
from tests.integration.test_postgres import fill_awkward
from tests.support.verification import CANARY, assert_detected, assert_no_canary, latest_report, verify
from tests.support.workspace import REPO_ROOT

MORE_SCHEMA = f"""
CREATE TABLE events (id int, at date NOT NULL, what text) PARTITION BY RANGE (at);
CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
INSERT INTO events VALUES (1, '2025-05-05', 'a'), (2, '2026-06-06', '{CANARY}'), (3, '2026-07-07', NULL);
CREATE TABLE "empty ""quoted"" table" (v text);
CREATE INDEX no_key_label ON no_key (label);
CREATE MATERIALIZED VIEW totals AS SELECT label, sum(amount) AS total FROM no_key GROUP BY label;
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
CREATE TRIGGER touch_no_key BEFORE INSERT ON no_key FOR EACH ROW EXECUTE FUNCTION touch();
ALTER TABLE no_key ADD CONSTRAINT amount_positive CHECK (amount > 0);
INSERT INTO "Customer List" ("full name", note) VALUES ('{CANARY}', '{CANARY}');
SELECT lo_from_bytea(0, '\\x00{CANARY.encode().hex()}'::bytea);
"""
TAMPERING = [
    ('UPDATE "Customer List" SET balance = balance + 1 WHERE id = 1', "table public.Customer List: same row count"),
    ('DELETE FROM "Customer List" WHERE id = 2', "table public.Customer List: expected 5 rows, found 4"),
    ("DELETE FROM no_key WHERE ctid IN (SELECT ctid FROM no_key WHERE label = 'twin' LIMIT 1)",
     "table public.no_key: expected 3 rows"),
    (("DELETE FROM no_key WHERE ctid IN (SELECT ctid FROM no_key WHERE label = 'twin' LIMIT 1); "
      "INSERT INTO no_key VALUES ('single', 2)"), "table public.no_key: same row count, different content"),
    ('UPDATE "Customer List" SET note = \'\' WHERE note IS NULL', "table public.Customer List: same row count"),
    ('DROP TABLE "empty ""quoted"" table"', 'table public.empty "quoted" table: missing'),
    ("SELECT setval('invoice_numbers', 1000, false)", "sequence public.invoice_numbers: behind the backup"),
    ("UPDATE events SET what = 'b' WHERE id = 3", "table public.events_2026: same row count"),
    ("SELECT lo_put(oid, 0, '\\x01'::bytea) FROM pg_largeobject_metadata", "large objects: does not match"),
    ("DROP INDEX no_key_label", "index public.no_key_label: missing"),
]


def scratch_databases(pg_server) -> list[str]:
    with pg_server.connect() as conn:
        return [r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'opsctl\\_verify%'")]


@pytest.fixture
def awkward(pg_policy, pg_server, pg_database):
    with pg_server.connect(pg_database, PG_ROLE, PG_ROLE_PASSWORD) as conn:
        fill_awkward(conn)
        conn.execute(MORE_SCHEMA)
    backup = pg_policy.opsctl("backup")
    assert backup.returncode == 0, backup.output
    return pg_policy


def test_awkward_round_trip_passes_and_each_tampering_is_named(awkward, pg_server):
    result = verify(awkward)
    assert result.returncode == 0, result.output
    report = latest_report(awkward)["targets"][0]
    tables = {t["name"]: t for t in report["tables"]}
    assert {"public.events_2025", "public.events_2026", "public.no_key"} <= tables.keys()
    assert all(t["fingerprint"] == "match" for t in tables.values())
    assert scratch_databases(pg_server) == []
    for tamper, names in TAMPERING:
        assert_detected(awkward, tamper, names)
    assert scratch_databases(pg_server) == []
    assert_no_canary(awkward, result.output)


def test_pgbench_writing_during_backup_then_verify_passes(pg_policy, pg_server, pg_database):
    env = {**os.environ, "PGHOST": "127.0.0.1", "PGPORT": str(pg_server.port), "PGUSER": PG_ROLE,
           "PGPASSWORD": PG_ROLE_PASSWORD, "PGDATABASE": pg_database}
    pgbench = str(pg_server.bindir / "pgbench")
    subprocess.run([pgbench, "-i", "-q", "-s", "2"], env=env, check=True, capture_output=True)
    load = subprocess.Popen([pgbench, "-c", "4", "-T", "20", "-n"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        time.sleep(1)
        backup = pg_policy.opsctl("backup")
    finally:
        load.terminate()
        load.wait()
    assert backup.returncode == 0, backup.output
    result = verify(pg_policy)
    assert result.returncode == 0, result.output


def test_no_right_to_create_the_scratch_database_is_a_clear_message(workspace, pg_server, pg_database):
    with pg_server.connect() as conn:
        conn.execute("DROP ROLE IF EXISTS crm_reader")
        conn.execute("CREATE ROLE crm_reader LOGIN NOCREATEDB PASSWORD 'reader-pass' IN ROLE pg_read_all_data")
    with pg_server.connect(pg_database, PG_ROLE, PG_ROLE_PASSWORD) as conn:
        conn.execute("CREATE TABLE t (v int); INSERT INTO t VALUES (1)")
    workspace.secret("db.pass", "reader-pass")
    workspace.write_policy({"engine": "postgresql", "host": "127.0.0.1", "port": pg_server.port,
                            "user": "crm_reader", "password": {"file": "db.pass"}, "name": pg_database})
    assert workspace.opsctl("init").returncode == 0
    assert workspace.opsctl("backup").returncode == 0
    result = verify(workspace)
    assert result.returncode == 1
    assert "may not create databases" in result.output and "CREATEDB" in result.output
    assert "Traceback" not in result.output


def test_sigterm_during_verify_drops_the_scratch_database(awkward, pg_server):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OPSCTL_TEST_TAMPER_SQL": "SELECT pg_sleep(60)"}
    policy = str(awkward.root / "policy.yaml")
    proc = subprocess.Popen([sys.executable, "-m", "tests.support.faulty", "--policy", policy, "verify"],
                            cwd=awkward.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not _sleeping(pg_server):
        time.sleep(0.2)
    assert scratch_databases(pg_server), "the scratch database should exist while verify runs"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert scratch_databases(pg_server) == []


def _sleeping(pg_server) -> bool:
    with pg_server.connect() as conn:
        found = conn.execute("SELECT 1 FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(60)%'").fetchone()
        return found is not None


def test_a_table_whose_type_has_no_hash_function_is_fingerprinted_too(pg_policy, pg_server, pg_database):
    """json and point have no hash function: such a table falls back to hashing its rows' text."""
    with pg_server.connect(pg_database, PG_ROLE, PG_ROLE_PASSWORD) as conn:
        conn.execute("CREATE TABLE shapes (doc json, at point)")
        conn.execute("""INSERT INTO shapes VALUES ('{"a": 1}', '(1,2)'), ('{"a": 1}', '(1,2)'), (NULL, NULL)""")
    assert pg_policy.opsctl("backup").returncode == 0
    assert verify(pg_policy).returncode == 0
    assert_detected(pg_policy, "UPDATE shapes SET doc = '{\"a\": 2}' WHERE doc IS NULL",
                    "table public.shapes: same row count")
