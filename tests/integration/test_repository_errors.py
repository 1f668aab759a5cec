"""Each repository failure gets its own message and hint: wrong password, missing, locked, no restic."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
from contextlib import closing

import pytest


@pytest.fixture
def crm(workspace):
    with closing(sqlite3.connect(workspace.root / "crm.sqlite3")) as conn, conn:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO customers (name) VALUES ('Ada'), ('Bảo')")
    workspace.write_policy({"engine": "sqlite", "path": "crm.sqlite3"})
    return workspace


def test_missing_repository_says_to_run_init(crm):
    result = crm.opsctl("backup")
    assert result.returncode == 1
    assert "there is no restic repository at local" in result.stdout
    assert "opsctl init" in result.stdout


def test_init_is_idempotent_and_never_touches_an_existing_repository(crm):
    assert crm.opsctl("init").returncode == 0
    config = crm.root / "repo-local" / "config"
    before = hashlib.sha256(config.read_bytes()).hexdigest()
    again = crm.opsctl("init")
    assert again.returncode == 0
    assert "already initialised; left unchanged" in again.stdout
    assert hashlib.sha256(config.read_bytes()).hexdigest() == before


def test_init_refuses_a_folder_with_other_files(crm):
    (crm.root / "repo-local").mkdir()
    (crm.root / "repo-local" / "photos.zip").write_text("not a repository")
    result = crm.opsctl("init")
    assert result.returncode == 2
    assert "is not empty and holds no restic repository" in result.stdout
    assert sorted(p.name for p in (crm.root / "repo-local").iterdir()) == ["photos.zip"]


def test_wrong_repository_password(crm):
    assert crm.opsctl("init").returncode == 0
    crm.secret("repository.pass", "not-the-password")
    result = crm.opsctl("backup")
    assert result.returncode == 1
    assert "the repository password does not open local" in result.stdout


def _exclusive_lock_readable(restic_binary: str, repo, env: dict) -> bool:
    """The lock file appears before restic has finished writing it; wait until another restic can read it."""
    for lock in (repo / "locks").iterdir():
        shown = subprocess.run([restic_binary, "-r", str(repo), "--no-lock", "cat", "lock", lock.name],
                               env=env, capture_output=True, text=True, check=False)
        if shown.returncode == 0 and '"exclusive": true' in shown.stdout:
            return True
    return False


def test_missing_restic_is_explained(crm):
    result = crm.opsctl("backup", env={"OPSCTL_RESTIC": "/nonexistent/restic"})
    assert result.returncode == 1
    assert "restic is not installed" in result.stderr
    assert "apt-get install restic" in result.stderr
    assert "Traceback" not in result.output


def test_unknown_snapshot_is_bad_input(crm):
    assert crm.opsctl("init").returncode == 0
    assert crm.opsctl("backup").returncode == 0
    result = crm.opsctl("restore", "--yes", "--snapshot", "deadbeef", "--to", "x.sqlite3")
    assert result.returncode == 2
    assert "is not a snapshot of this database" in result.stderr
