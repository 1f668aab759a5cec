"""What a killed run leaves (scratch databases, copies of a SQLite database) goes at the next run; nothing else does."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

from psycopg import sql

from opsctl.leftovers import MARK_FILE, Maker, me
from tests.conftest import MY_PASSWORD, MY_USER, PG_ROLE, PG_ROLE_PASSWORD
from tests.support.bank import make_bank

KILLED_ONCE_RESTORED = {"OPSCTL_TEST_KILL_AT": "restored"}


def _pg_scratch(pg_server, database: str) -> dict[str, str | None]:
    """opsctl's kind of names made for `database` (other tests on this shared server leave theirs)."""
    with pg_server.connect() as conn:
        rows = conn.execute("SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database "
                            "WHERE (datname LIKE 'opsctl\\_%%' OR datname LIKE '%%\\_opsctl\\_%%') "
                            "AND strpos(datname, %s) > 0", (database,)).fetchall()
    return dict(rows)


def test_a_killed_verify_leaves_a_scratch_database_the_next_backup_removes(pg_policy, pg_server, pg_database):
    with pg_server.connect(pg_database, PG_ROLE, PG_ROLE_PASSWORD) as conn:
        conn.execute("CREATE TABLE customers (email text)")
        conn.execute("INSERT INTO customers VALUES ('someone@example.org')")
    assert pg_policy.opsctl("backup").returncode == 0
    killed = pg_policy.opsctl("verify", env=KILLED_ONCE_RESTORED)
    assert killed.returncode == -9, killed.output
    left = _pg_scratch(pg_server, pg_database)
    assert len(left) == 1, left
    (name, mark), = left.items()
    assert Maker.parse(mark or "") is not None

    look_alike = pg_database + "_opsctl_restore_abcdef"  # opsctl's kind of name, without the mark: never touched
    with pg_server.connect() as conn:
        conn.autocommit = True
        conn.execute(f'CREATE DATABASE "{look_alike}"')
    backup = pg_policy.opsctl("backup")
    assert backup.returncode == 0, backup.output
    assert f"removed 1 scratch database(s) a killed opsctl run left behind: database {name}" in backup.stderr
    assert list(_pg_scratch(pg_server, pg_database)) == [look_alike]


def test_a_forged_mark_never_gets_a_database_dropped(pg_policy, pg_server, pg_database):
    """A database's owner writes its comment: a mark on the source, or on any name that is not a staging one, or
    on a database another role owns, is ignored."""
    forged = replace(me(), boot="forged").mark()
    other = pg_database + "_app"
    look_alike = pg_database + "_opsctl_restore_abc123"
    pg_server.create_role_and_database("crm_someone_else", "unused", look_alike)  # staging name, not our role
    with pg_server.connect() as conn:
        conn.autocommit = True
        conn.execute(f'CREATE DATABASE "{other}" OWNER {PG_ROLE}')
        for name in (pg_database, other, look_alike):
            conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(sql.Identifier(name), sql.Literal(forged)))
    backup = pg_policy.opsctl("backup")
    assert backup.returncode == 0, backup.output
    with pg_server.connect() as conn:
        found = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (pg_database + "%",))
        names = {row[0] for row in found}
    assert names == {pg_database, other, look_alike}, backup.stderr


def test_doctor_lists_the_scratch_databases_it_removed(my_policy, mariadb_server, my_database):
    with mariadb_server.connect(my_database, MY_USER, MY_PASSWORD) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE customers (email TEXT)")
        cur.execute("INSERT INTO customers VALUES ('someone@example.org')")
    assert my_policy.opsctl("backup").returncode == 0
    killed = my_policy.opsctl("restore", "--yes", "--to", my_database + "_copy", env=KILLED_ONCE_RESTORED)
    assert killed.returncode == -9, killed.output
    with mariadb_server.connect() as conn, conn.cursor() as cur:
        cur.execute("SHOW DATABASES LIKE %s", (f"{my_database}\\_copy\\_opsctl\\_restore\\_%",))
        staging = [row[0] for row in cur.fetchall()]
    assert len(staging) == 1

    doctor = my_policy.opsctl("--json", "doctor")
    section = next(s for s in json.loads(doctor.stdout)["sections"] if s["name"] == "leftovers of killed runs")
    assert [c["detail"] for c in section["checks"]] == [f"database {staging[0]}"], section
    with mariadb_server.connect() as conn, conn.cursor() as cur:
        cur.execute("SHOW DATABASES LIKE %s", (f"{my_database}%",))
        assert [row[0] for row in cur.fetchall()] == [my_database]


def test_a_killed_sqlite_verify_leaves_a_copy_any_next_command_removes(workspace):
    make_bank(workspace.root / "bank.sqlite3")
    workspace.write_policy({"engine": "sqlite", "path": "bank.sqlite3"})
    assert workspace.opsctl("init").returncode == 0
    assert workspace.opsctl("backup").returncode == 0
    killed = workspace.opsctl("verify", env=KILLED_ONCE_RESTORED)
    assert killed.returncode == -9, killed.output
    scratch = workspace.root / "state" / "tmp"
    left = [p for p in scratch.iterdir() if p.name.startswith("opsctl-verify-")]
    assert len(left) == 1 and [p.name for p in left[0].iterdir() if p.name != MARK_FILE]  # a copy of the database

    alive = _marked_folder(scratch / "opsctl-verify-alive", me())  # a live run's: this test process
    elsewhere = _marked_folder(scratch / "opsctl-verify-other-host", replace(me(), host="another-host", pid=1))
    unmarked = scratch / "opsctl-verify-unmarked"
    unmarked.mkdir()
    outside = workspace.root / "outside"
    outside.mkdir()
    (outside / MARK_FILE).write_text(replace(me(), boot="old-boot").mark())
    container = _marked_folder(scratch / "opsctl-verify-container", replace(me(), pidns=1, pid=_a_dead_pid()))
    (scratch / "opsctl-verify-link").symlink_to(outside)  # a planted link to a folder that looks dead

    listed = workspace.opsctl("snapshots")  # no database, no secrets: still sweeps
    assert listed.returncode == 0, listed.output
    assert not left[0].exists()
    assert all(p.exists() for p in (alive, elsewhere, unmarked, outside / MARK_FILE, container))
    shutil.rmtree(alive)


def test_a_killed_sqlite_restore_leaves_its_staging_copy_beside_the_destination_until_the_next_run(workspace):
    make_bank(workspace.root / "bank.sqlite3")
    workspace.write_policy({"engine": "sqlite", "path": "bank.sqlite3"})
    assert workspace.opsctl("init").returncode == 0
    assert workspace.opsctl("backup").returncode == 0
    (workspace.root / "restored").mkdir()
    killed = workspace.opsctl("restore", "--yes", "--to", "restored/bank.sqlite3", env=KILLED_ONCE_RESTORED)
    assert killed.returncode == -9, killed.output
    staged = list((workspace.root / "restored").iterdir())
    assert [p.name.startswith(".opsctl-restore-") for p in staged] == [True], staged

    listed = workspace.opsctl("snapshots")
    assert listed.returncode == 0, listed.output
    assert list((workspace.root / "restored").iterdir()) == []
    assert not [p for p in (workspace.root / "state" / "tmp").iterdir() if "pointer" in p.name]


def _marked_folder(folder: Path, maker: Maker) -> Path:
    folder.mkdir(mode=0o700)
    (folder / MARK_FILE).write_text(maker.mark())
    return folder


def test_a_dead_makers_secret_folder_in_shared_memory_is_removed(workspace):
    """restic's S3 keys live in /dev/shm for one run; after a kill -9 the next run removes them."""
    make_bank(workspace.root / "bank.sqlite3")
    workspace.write_policy({"engine": "sqlite", "path": "bank.sqlite3"})
    dead = replace(me(), pid=_a_dead_pid(), started=12345)
    folder = _marked_folder(Path("/dev/shm") / f"opsctl-secrets-test{os.getpid()}", dead)  # noqa: S108
    (folder / "secret-0").write_text("[default]\naws_secret_access_key = not-a-real-key\n")
    try:
        assert workspace.opsctl("policy", "validate").returncode == 0
        assert not folder.exists()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _a_dead_pid() -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def test_anything_but_a_whole_mark_is_no_mark():
    fields = '"host": "h", "boot": "b", "pid": 1, "started": 1'
    for text in ("", "{}", "[1]", '{"kind": "opsctl-scratch"}', '{"kind": "opsctl-scratch", "host": 1}', "\x00\xff",
                 '{"kind": "other", ' + fields + "}", '{"kind": "opsctl-scratch", "pid": "1", ' + fields[:-14] + "}"):
        assert Maker.parse(text) is None, text
