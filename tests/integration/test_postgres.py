"""PostgreSQL end to end: the real opsctl, a real server, real restic, a local repository."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from tests.conftest import PG_ROLE, PG_ROLE_PASSWORD
from tests.support.workspace import REPO_ROOT, made

AWKWARD_SCHEMA = """
CREATE TABLE "Customer List" (
    id bigserial PRIMARY KEY,
    "full name" text, note text, photo bytea, profile jsonb, balance numeric(20, 6),
    seen timestamptz, tags text[], scores int[], active boolean, born date, uid uuid, ip inet
);
CREATE TABLE no_key (label text, amount int);
CREATE VIEW rich_customers AS SELECT id, "full name" FROM "Customer List" WHERE balance > 1000;
CREATE SEQUENCE invoice_numbers START 1000;
"""
AWKWARD_ROWS = [
    ("Nguyễn Thị Thảo", "Khách hàng thân thiết — gọi sau 17h", b"\x00\x01\x02\xff\x00",
     '{"tier": "gold", "langs": ["vi", "en"]}', "12345678901234.123456", "2026-11-20 03:00:00+07",
     ["vip", None, "hà nội"], [1, None, 3], True, "1985-02-28",
     "6f1c2d3e-0000-4000-8000-000000000001", "10.1.2.3"),
    ("Empty note", "", b"", "{}", "0", "1970-01-01 00:00:00+00", [], [], False, None, None, None),
    ("Null note", None, None, None, None, None, None, None, None, None, None, None),
    ("O'Brien \"quoted\"; DROP TABLE x;--", "tab\there\nnewline", bytes(range(256)),
     '{"nested": {"a": [1, 2, {"b": null}]}}', "-0.000001", "2026-03-29 01:30:00+01",
     ["a,b", "c\"d"], [2147483647], True, "2000-01-01",
     "6f1c2d3e-0000-4000-8000-000000000002", "::1"),
]


def fill_awkward(conn) -> None:
    conn.execute(AWKWARD_SCHEMA)
    with conn.cursor() as cur:
        cur.executemany(
            'INSERT INTO "Customer List" ("full name", note, photo, profile, balance, seen, tags, scores, active, born,'
            " uid, ip) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)", AWKWARD_ROWS)
    conn.execute("INSERT INTO no_key VALUES ('twin', 1), ('twin', 1), ('single', 2)")
    conn.execute("SELECT nextval('invoice_numbers') FROM generate_series(1, 42)")


def table_contents(conn) -> dict:
    return {
        "customers": conn.execute('SELECT * FROM "Customer List" ORDER BY id').fetchall(),
        "no_key": sorted(conn.execute("SELECT * FROM no_key").fetchall()),
        "view": conn.execute("SELECT * FROM rich_customers ORDER BY id").fetchall(),
        "sequence": conn.execute("SELECT last_value FROM invoice_numbers").fetchone(),
    }


def test_awkward_types_come_back_equal(pg_policy, pg_server, pg_database):
    with pg_server.connect(pg_database, PG_ROLE, PG_ROLE_PASSWORD) as conn:
        fill_awkward(conn)
        before = table_contents(conn)

    backup = pg_policy.opsctl("backup")
    assert backup.returncode == 0, backup.output
    restored_name = pg_database + "_restored"
    restore = pg_policy.opsctl("restore", "--yes", "--snapshot", "latest", "--to", restored_name)
    assert restore.returncode == 0, restore.output
    assert "row counts match the backup: 2 tables, 7 rows" in restore.stdout

    with pg_server.connect(restored_name) as conn:
        assert table_contents(conn) == before


def test_restore_refuses_to_overwrite_and_keeps_the_old_database_aside(pg_policy, pg_server, pg_database):
    with pg_server.connect(pg_database, PG_ROLE, PG_ROLE_PASSWORD) as conn:
        conn.execute("CREATE TABLE t (v int)")
        conn.execute("INSERT INTO t VALUES (1), (2)")
    assert pg_policy.opsctl("backup").returncode == 0
    other = pg_database + "_busy"
    pg_server.create_role_and_database("crm_app", "unused", other)
    with pg_server.connect(other) as conn:
        conn.execute("CREATE TABLE precious (v int)")

    refused = pg_policy.opsctl("restore", "--yes", "--to", other)
    assert refused.returncode == 2
    assert "already exists and is not empty" in refused.stderr

    source = pg_policy.opsctl("restore", "--yes", "--to", pg_database, "--replace")
    assert source.returncode == 2
    assert "is the database this policy backs up" in source.stderr
    assert f"--confirm-source {pg_database}" in source.stderr

    replaced = pg_policy.opsctl("restore", "--yes", "--to", other, "--replace")
    assert replaced.returncode == 0, replaced.output
    with pg_server.connect() as conn:
        names = [r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (other + "%",))]
    aside = [n for n in names if n != other]
    assert len(aside) == 1 and "before_restore" in aside[0]
    with pg_server.connect(aside[0]) as conn:
        assert conn.execute("SELECT count(*) FROM precious").fetchone()[0] == 0
    with pg_server.connect(other) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 2


def test_an_existing_empty_database_is_moved_aside_never_dropped(pg_policy, pg_server, pg_database):
    """No table is not nothing: owner, settings and the application's open session all survive."""
    assert pg_policy.opsctl("backup").returncode == 0
    other = pg_database + "_empty"
    pg_server.create_role_and_database("crm_app", "unused", other)
    with pg_server.connect() as conn:
        conn.execute(f'ALTER DATABASE "{other}" SET work_mem = \'7MB\'')
    with pg_server.connect(other) as application:
        busy = pg_policy.opsctl("restore", "--yes", "--to", other)
        assert busy.returncode == 1 and "is in use" in busy.stderr, busy.output
        assert application.execute("SELECT 1").fetchone() == (1,)  # its session was not ended
    restored = pg_policy.opsctl("restore", "--yes", "--to", other)
    assert restored.returncode == 0, restored.output
    aside = restored.stdout.split("renamed to ")[1].split()[0]
    with pg_server.connect() as conn:
        kept = conn.execute("SELECT pg_get_userbyid(d.datdba), s.setconfig FROM pg_database d "
                            "JOIN pg_db_role_setting s ON s.setdatabase = d.oid WHERE d.datname = %s", (aside,))
        assert kept.fetchall() == [("crm_app", ["work_mem=7MB"])]


def _fill_big(conn, rows: int = 300_000) -> None:
    conn.execute("CREATE TABLE big (id int PRIMARY KEY, payload text)")
    conn.execute("INSERT INTO big SELECT g, md5(g::text) || md5((g * 7)::text) || md5((g * 13)::text) "
                 "|| md5((g * 31)::text) FROM generate_series(1, %s) g", (rows,))


def _wait_for_copy(pg_server, database: str, timeout: float = 60, like: bool = False) -> int:
    """The backend pid of pg_dump (or pg_restore) once it is streaming table data."""
    deadline = time.monotonic() + timeout
    match = "LIKE" if like else "="
    with pg_server.connect() as conn:
        while time.monotonic() < deadline:
            row = conn.execute(f"SELECT pid FROM pg_stat_activity WHERE datname {match} %s AND query LIKE 'COPY %%'",
                               (database,)).fetchone()
            if row:
                return row[0]
            time.sleep(0.005)
    raise AssertionError("pg_dump never started copying data")


def _snapshot_ids(workspace) -> list[str]:
    listing = workspace.opsctl("--json", "snapshots")
    assert listing.returncode == 0, listing.output
    return [s["id"] for s in json.loads(listing.stdout)["snapshots"]]


def _start_backup(workspace) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.Popen([sys.executable, "-m", "opsctl", "--policy", str(workspace.root / "policy.yaml"), "backup"],
                            cwd=workspace.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_dump_cut_mid_stream_leaves_no_snapshot(pg_policy, pg_server, pg_database):
    with pg_server.connect(pg_database, PG_ROLE, PG_ROLE_PASSWORD) as conn:
        _fill_big(conn, rows=50_000)
    assert pg_policy.opsctl("backup").returncode == 0
    good = _snapshot_ids(pg_policy)
    with pg_server.connect(pg_database, PG_ROLE, PG_ROLE_PASSWORD) as conn:
        conn.execute("INSERT INTO big SELECT g, md5(g::text) || repeat(md5(g::text), 6) "
                     "FROM generate_series(50001, 400000) g")

    running = _start_backup(pg_policy)
    pid = _wait_for_copy(pg_server, pg_database)
    with pg_server.connect() as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
    stdout, stderr = running.communicate(timeout=120)

    assert running.returncode == 1, stdout + stderr
    assert "pg_dump of database" in stdout and "failed" in stdout
    assert _snapshot_ids(pg_policy) == good
    restored = pg_policy.opsctl("restore", "--yes", "--to", pg_database + "_r")
    assert restored.returncode == 0, restored.output
    assert good[0][:8] in restored.stdout
    with pg_server.connect(pg_database + "_r") as conn:
        assert conn.execute("SELECT count(*) FROM big").fetchone()[0] == 50_000


def test_opsctl_killed_mid_backup_leaves_no_snapshot(pg_policy, pg_server, pg_database):
    with pg_server.connect(pg_database, PG_ROLE, PG_ROLE_PASSWORD) as conn:
        _fill_big(conn, rows=400_000)
    running = _start_backup(pg_policy)
    _wait_for_copy(pg_server, pg_database)
    running.send_signal(signal.SIGKILL)
    running.wait(timeout=30)
    time.sleep(1)  # restic and pg_dump receive their parent-death signal
    assert _snapshot_ids(pg_policy) == []


def test_wrong_database_password_is_a_clear_error(pg_policy):
    pg_policy.secret("db.pass", "not-the-password")
    result = pg_policy.opsctl("backup")
    assert result.returncode == 1
    assert "PostgreSQL refused the login of user crm_app" in result.stdout
    assert "Traceback" not in result.output


def test_restic_alone_can_restore_the_dump(pg_policy, pg_server, pg_database, restic_binary):
    """The README's recovery path without opsctl: restic dump | pg_restore ignores the manifest trailer."""
    with pg_server.connect(pg_database, PG_ROLE, PG_ROLE_PASSWORD) as conn:
        fill_awkward(conn)
        before = table_contents(conn)
    assert pg_policy.opsctl("backup").returncode == 0
    target = pg_database + "_by_hand"
    with pg_server.connect() as conn:
        conn.execute(f"CREATE DATABASE {target}")
    env = {**os.environ, "RESTIC_PASSWORD_FILE": str(pg_policy.root / "repository.pass"),
           "PGPASSWORD": pg_server.password}
    dump = subprocess.Popen([restic_binary, "-r", str(pg_policy.root / "repo-local"), "dump", "latest",
                             f"/{pg_database}.pgdump"], env=env, stdout=subprocess.PIPE)
    restore = subprocess.run(["pg_restore", "--exit-on-error", "--no-owner", "-h", "127.0.0.1",
                              "-p", str(pg_server.port), "-U", "postgres", "-d", target],
                             stdin=dump.stdout, env=env, capture_output=True, text=True, check=False)
    dump.stdout.close()
    assert dump.wait() == 0
    assert restore.returncode == 0, restore.stderr
    with pg_server.connect(target) as conn:
        assert table_contents(conn) == before


def test_sigterm_during_restore_leaves_nothing_behind(pg_policy, pg_server, pg_database):
    """systemd stops units with SIGTERM: the staging database goes, the destination never appears."""
    with pg_server.connect(pg_database, PG_ROLE, PG_ROLE_PASSWORD) as conn:
        _fill_big(conn, rows=400_000)
    assert pg_policy.opsctl("backup").returncode == 0
    destination = pg_database + "_never"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    running = subprocess.Popen([sys.executable, "-m", "opsctl", "--policy", str(pg_policy.root / "policy.yaml"),
                                "restore", "--yes", "--to", destination], cwd=pg_policy.root, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_copy(pg_server, destination[:40] + "_opsctl_restore_%", like=True)
    running.send_signal(signal.SIGTERM)
    _, stderr = running.communicate(timeout=60)

    assert running.returncode == 130
    assert "interrupted" in stderr
    with pg_server.connect() as conn:
        left = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s",
                            (destination[:40] + "%",)).fetchall()
    assert left == []


def test_restore_keeps_the_original_encoding_and_locale(workspace, pg_server, pg_database):  # noqa: ARG001 - makes the role
    """The cluster defaults to UTF8 / C.UTF-8; a LATIN1 / C database must come back LATIN1 / C."""
    name = "latin_crm"
    with pg_server.connect() as conn:
        conn.execute(f"CREATE DATABASE {name} OWNER {PG_ROLE} TEMPLATE template0 ENCODING 'LATIN1' "
                     "LC_COLLATE 'C' LC_CTYPE 'C'")
    with pg_server.connect(name, PG_ROLE, PG_ROLE_PASSWORD) as conn:
        conn.execute("CREATE TABLE clients (name text)")
        conn.execute("INSERT INTO clients VALUES ('Café Müller'), ('Zoë'), ('apple')")
    workspace.secret("db.pass", PG_ROLE_PASSWORD)
    workspace.write_policy({"engine": "postgresql", "host": "127.0.0.1", "port": pg_server.port,
                            "user": PG_ROLE, "password": {"file": "db.pass"}, "name": name})
    assert workspace.opsctl("init").returncode == 0
    assert workspace.opsctl("backup").returncode == 0
    restored = workspace.opsctl("restore", "--yes", "--to", name + "_back")
    assert restored.returncode == 0, restored.output

    with pg_server.connect() as conn:
        settings = conn.execute("SELECT pg_encoding_to_char(encoding), datcollate, datctype FROM pg_database "
                                "WHERE datname = %s", (name + "_back",)).fetchone()
    assert settings == ("LATIN1", "C", "C")
    with pg_server.connect(name + "_back", PG_ROLE, PG_ROLE_PASSWORD) as conn:
        assert [r[0] for r in conn.execute("SELECT name FROM clients ORDER BY name")] == ["Café Müller", "Zoë", "apple"]


def test_pgbench_writing_during_backup_still_restores_with_matching_counts(pg_policy, pg_server, pg_database):
    """Row counts come from pg_dump's own snapshot, so concurrent writers cannot make them disagree."""
    env = {**os.environ, "PGHOST": "127.0.0.1", "PGPORT": str(pg_server.port), "PGUSER": PG_ROLE,
           "PGPASSWORD": PG_ROLE_PASSWORD, "PGDATABASE": pg_database}
    pgbench = str(pg_server.bindir / "pgbench")
    # With foreign keys, pg_restore re-checks that every history row names an existing account, teller, branch.
    subprocess.run([pgbench, "-i", "-q", "-s", "5", "--foreign-keys"], env=env, check=True, capture_output=True)
    load = subprocess.Popen([pgbench, "-c", "4", "-T", "30", "-n"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        time.sleep(1)
        backup = pg_policy.opsctl("--json", "backup")
        with pg_server.connect(pg_database, PG_ROLE, PG_ROLE_PASSWORD) as conn:
            history_after_backup = conn.execute("SELECT count(*) FROM pgbench_history").fetchone()[0]
    finally:
        load.terminate()
        load.wait()
    assert backup.returncode == 0, backup.output
    counted = made(backup.stdout)["rows"]

    restore = pg_policy.opsctl("restore", "--yes", "--to", pg_database + "_under_load")
    assert restore.returncode == 0, restore.output
    assert "row counts match the backup" in restore.stdout
    with pg_server.connect(pg_database + "_under_load", PG_ROLE, PG_ROLE_PASSWORD) as conn:
        history = conn.execute("SELECT count(*) FROM pgbench_history").fetchone()[0]
        # pgbench keeps the sums of balances equal across its three tables in every committed state.
        sums = conn.execute("SELECT (SELECT sum(abalance) FROM pgbench_accounts), (SELECT sum(bbalance) FROM "
                            "pgbench_branches), (SELECT sum(tbalance) FROM pgbench_tellers)").fetchone()
    assert 0 < history < history_after_backup, "the load must have written before and after the snapshot"
    assert sums[0] == sums[1] == sums[2]
    assert counted == 5 * 100_000 + 5 + 50 + history


def test_the_environment_cannot_send_opsctl_to_another_server(pg_policy):
    """PGHOSTADDR beats the host name in libpq: left in place it would take the session, password and all,
    wherever the environment says."""
    redirected = {"PGHOSTADDR": "127.0.0.8", "PGSERVICE": "elsewhere"}
    backup = pg_policy.opsctl("backup", env=redirected)
    assert backup.returncode == 0, backup.output
    restore = pg_policy.opsctl("restore", "--yes", env=redirected)
    assert restore.returncode == 0, restore.output
