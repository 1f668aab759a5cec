"""The contract every target kind keeps: init, backup, snapshots, restore, prune, check, and clear failures."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing

import pytest

from tests.support.bank import ACCOUNTS, TOTAL, make_bank
from tests.support.targets import local_target, s3_target, sftp_target

KINDS = ["local", "mount", "sftp", "s3"]


class Kind:
    """One target kind in a test: its policy entry and a way to make it unreachable."""

    def __init__(self, kind: str, request, workspace) -> None:
        self.kind = kind
        self.workspace = workspace
        if kind == "local":
            self.entry = local_target("t")
        elif kind == "mount":
            self.disk = request.getfixturevalue("small_disk")
            self.entry = {"name": "t", "kind": "mount", "path": str(self.disk.path / "crm")}
        elif kind == "sftp":
            self.server = request.getfixturevalue("sftp_endpoint")
            self.entry = sftp_target(self.server, "t")
        else:
            self.server = request.getfixturevalue("s3_endpoint")
            self.entry = s3_target(self.server, workspace, "t")

    def break_it(self) -> str:
        """Make the target unreachable; return words the error must contain."""
        if self.kind == "local":
            (self.workspace.root / "repo-t").rename(self.workspace.root / "repo-t.gone")
            return "(the folder does not exist)"
        if self.kind == "mount":
            self.disk.unmount()
            return "no share is mounted"
        self.server.stop()
        return "cannot be reached"


@pytest.fixture(params=KINDS)
def kind(request, workspace):
    make_bank(workspace.root / "bank.sqlite3")
    target = Kind(request.param, request, workspace)
    workspace.write_policy({"engine": "sqlite", "path": "bank.sqlite3"}, [target.entry],
                           retention={"keep_last": 1}, lock_wait="2s")
    result = workspace.opsctl("init")
    assert result.returncode == 0, result.output
    return target


def test_backup_restore_prune_check(kind):
    ws = kind.workspace
    for _ in range(2):
        result = ws.opsctl("backup")
        assert result.returncode == 0, result.output
    listed = json.loads(ws.opsctl("--json", "snapshots").stdout)["snapshots"]
    assert len(listed) == 2

    restored = ws.opsctl("restore", "--yes", "--to", "out.sqlite3")
    assert restored.returncode == 0, restored.output
    with closing(sqlite3.connect(ws.root / "out.sqlite3")) as conn:
        assert conn.execute("SELECT count(*), sum(balance) FROM accounts").fetchone() == (ACCOUNTS, TOTAL)

    dry = ws.opsctl("prune", "--dry-run")
    assert dry.returncode == 0 and "would remove 1" in dry.stdout, dry.output
    assert len(json.loads(ws.opsctl("--json", "snapshots").stdout)["snapshots"]) == 2
    pruned = ws.opsctl("prune")
    assert pruned.returncode == 0 and "removed 1" in pruned.stdout, pruned.output
    left = json.loads(ws.opsctl("--json", "snapshots").stdout)["snapshots"]
    assert [s["id"] for s in left] == [listed[-1]["id"]], "keep_last 1 keeps the newest"

    checked = ws.opsctl("check", "--read-data-subset", "100%")
    assert checked.returncode == 0 and "no errors" in checked.stdout, checked.output


def test_wrong_password_is_named(kind):
    ws = kind.workspace
    ws.secret("repository.pass", "not-the-password")
    result = ws.opsctl("backup")
    assert result.returncode == 1
    assert "the repository password does not open t (" in result.stdout


def test_unreachable_target_is_named_with_its_cause(kind):
    words = kind.break_it()
    result = kind.workspace.opsctl("backup")
    assert result.returncode == 1
    assert f"t ({kind.kind}" in result.stdout and words in result.stdout, result.output
    assert "Traceback" not in result.output
