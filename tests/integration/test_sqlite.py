"""SQLite end to end, with a writer moving money between accounts while the backup runs."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
from contextlib import closing

import pytest

from tests.support.bank import ACCOUNTS, TOTAL, Writer, make_bank
from tests.support.workspace import made


@pytest.fixture
def bank(workspace):
    make_bank(workspace.root / "bank.sqlite3")
    workspace.write_policy({"engine": "sqlite", "path": "bank.sqlite3"})
    assert workspace.opsctl("init").returncode == 0
    return workspace


def test_backup_during_writes_restores_a_consistent_copy(bank):
    writer = Writer(bank.root / "bank.sqlite3")
    writer.start()
    try:
        while writer.commits < 50:
            pass
        backup = bank.opsctl("--json", "backup")
        commits_during = writer.commits
    finally:
        writer.stop.set()
        writer.join()
    assert backup.returncode == 0, backup.output
    assert commits_during > 50

    restore = bank.opsctl("restore", "--yes", "--to", "restored/bank.sqlite3")
    assert restore.returncode == 0, restore.output
    assert "row counts match the backup: 2 tables" in restore.stdout
    with closing(sqlite3.connect(bank.root / "restored" / "bank.sqlite3")) as conn:
        assert conn.execute("SELECT sum(balance) FROM accounts").fetchone()[0] == TOTAL
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        transfers = conn.execute("SELECT count(*) FROM transfers").fetchone()[0]
        accounts = conn.execute("SELECT count(*) FROM accounts").fetchone()[0]
    result = made(backup.stdout)
    assert accounts > ACCOUNTS, "the writer opened accounts before the copy"
    assert result["rows"] == accounts + transfers


def test_second_backup_without_changes_adds_little(bank):
    with closing(sqlite3.connect(bank.root / "bank.sqlite3")) as conn, conn:
        conn.execute("CREATE TABLE documents (body TEXT)")
        conn.executemany("INSERT INTO documents VALUES (?)", [(os.urandom(1024).hex(),) for _ in range(8000)])
    first = made(bank.opsctl("--json", "backup").stdout)
    second = made(bank.opsctl("--json", "backup").stdout)
    assert second["snapshot_id"] != first["snapshot_id"]
    assert second["dump_bytes"] == first["dump_bytes"]
    assert second["bytes_added"] < first["bytes_added"] / 4


def test_replace_keeps_the_previous_file_aside(bank):
    assert bank.opsctl("backup").returncode == 0
    target = bank.root / "copy.sqlite3"
    with closing(sqlite3.connect(target)) as conn, conn:
        conn.execute("CREATE TABLE notes (text TEXT)")
        conn.execute("INSERT INTO notes VALUES ('keep me')")

    assert bank.opsctl("restore", "--yes", "--to", "copy.sqlite3").returncode == 2
    replaced = bank.opsctl("restore", "--yes", "--to", "copy.sqlite3", "--replace")
    assert replaced.returncode == 0, replaced.output
    aside = [p for p in bank.root.iterdir() if p.name.startswith("copy.sqlite3.before-restore-")]
    assert len(aside) == 1
    with closing(sqlite3.connect(aside[0])) as conn:
        assert conn.execute("SELECT text FROM notes").fetchone() == ("keep me",)
    with closing(sqlite3.connect(target)) as conn:
        assert conn.execute("SELECT count(*) FROM accounts").fetchone()[0] == ACCOUNTS

    again = bank.opsctl("restore", "--yes", "--to", "copy.sqlite3", "--replace")  # within the same second, often
    assert again.returncode == 0, again.output
    asides = [p for p in bank.root.iterdir()
              if p.name.startswith("copy.sqlite3.before-restore-") and not p.name.endswith(("-wal", "-shm"))]
    assert len(asides) == 2, "a second replace must never overwrite the first kept copy"
    assert not [p for p in bank.root.iterdir() if "opsctl-restore" in p.name], "staging files were left behind"


def test_restored_file_keeps_the_owner_and_mode_of_the_file_it_replaces(bank):
    """The application runs as its own user: a root-owned 0600 file would lock it out after the restore."""
    assert bank.opsctl("backup").returncode == 0
    live = bank.root / "app.sqlite3"
    with closing(sqlite3.connect(live)) as conn, conn:
        conn.execute("CREATE TABLE notes (text TEXT)")
    os.chown(live, 65534, 65534)
    os.chmod(live, 0o640)
    replaced = bank.opsctl("restore", "--yes", "--to", "app.sqlite3", "--replace")
    assert replaced.returncode == 0, replaced.output
    found = live.stat()
    assert (found.st_uid, found.st_gid, stat.S_IMODE(found.st_mode)) == (65534, 65534, 0o640)


def test_a_file_open_in_another_process_is_not_moved_from_under_it(bank):
    """A writer keeps its descriptor: moved aside, its next commits would land in the copy nobody uses."""
    assert bank.opsctl("backup").returncode == 0
    live = bank.root / "bank.sqlite3"
    writer = subprocess.Popen([sys.executable, "-c", HOLD_OPEN, str(live)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "open"
        refused = bank.opsctl("restore", "--yes", "--to", "bank.sqlite3", "--replace", "--confirm-source", "bank")
        writer.communicate("commit\n", timeout=30)
    finally:
        writer.kill()
    assert refused.returncode == 1, refused.output
    assert f"is in use by PID {writer.pid} (python" in refused.stderr and "stop the application" in refused.stderr
    assert not [p for p in bank.root.iterdir() if "before-restore" in p.name or "opsctl-restore" in p.name]
    with closing(sqlite3.connect(live)) as conn:
        assert conn.execute("SELECT count(*) FROM accounts WHERE owner = 'late'").fetchone() == (1,)


HOLD_OPEN = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
conn.execute("INSERT INTO accounts (owner, balance) VALUES ('late', 0)")
print("open", flush=True)
sys.stdin.readline()
conn.execute("COMMIT")
"""


def test_restoring_over_the_source_needs_its_name(bank):
    assert bank.opsctl("backup").returncode == 0
    refused = bank.opsctl("restore", "--yes", "--to", "bank.sqlite3", "--replace", "--confirm-source", "wrong")
    assert refused.returncode == 2
    assert "--confirm-source bank" in refused.stderr
    accepted = bank.opsctl("restore", "--yes", "--to", "bank.sqlite3", "--replace", "--confirm-source", "bank")
    assert accepted.returncode == 0, accepted.output
    assert "previous database was kept" in accepted.stdout


def test_missing_source_file_is_a_clear_failure(bank):
    (bank.root / "bank.sqlite3").unlink()
    result = bank.opsctl("backup")
    assert result.returncode == 1
    assert "does not exist" in result.stdout and "database.path" in result.stdout
    assert not (bank.root / "bank.sqlite3").exists(), "a missing source must not be created empty"


def test_audit_trail_records_each_command_that_touches_backups(bank):
    backup = made(bank.opsctl("--json", "backup").stdout)
    assert bank.opsctl("restore", "--yes", "--to", "out.sqlite3").returncode == 0
    assert bank.opsctl("restore", "--yes", "--to", "out.sqlite3").returncode == 2  # refused: exists

    entries = [json.loads(line) for line in bank.audit_lines()]
    assert [(e["command"], e["outcome"]) for e in entries] == [
        ("init", "ok"), ("backup", "ok"), ("restore", "ok"), ("restore", "refused")]
    for entry in entries:
        expected = {"time", "user", "host", "policy", "policy_file", "targets", "duration_s", "opsctl_version"}
        assert expected <= set(entry)
        assert entry["policy"] == "crm-test"
    assert entries[1]["snapshot_ids"] == [backup["snapshot_id"]]
    assert entries[2]["snapshot_ids"] == [backup["snapshot_id"]]
    assert "already exists and is not empty" in entries[3]["error"]
    assert (bank.root / "state" / "audit.jsonl").stat().st_mode & 0o777 == 0o600


def test_no_verify_restores_with_the_dump_checked_and_says_what_was_skipped(bank):
    assert bank.opsctl("backup").returncode == 0
    quick = bank.opsctl("restore", "--yes", "--no-verify", "--to", "quick.sqlite3")
    assert quick.returncode == 0, quick.output
    assert "dump SHA-256 matches the manifest" in quick.stdout
    assert "row counts not checked" in quick.stdout and "opsctl verify" in quick.stdout
    with closing(sqlite3.connect(bank.root / "quick.sqlite3")) as conn:
        assert conn.execute("SELECT sum(balance) FROM accounts").fetchone()[0] == TOTAL
