"""opsctl restore when things have gone wrong: the site lost, a point in time, the nearest copy, replacing, no terminal.

Each test drives the real opsctl against real repositories (local, sshd, moto) and checks what the
on-call engineer would see: the plan on stderr, the runbook or the JSON result, and the data itself.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import time
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from tests.conftest import PG_ROLE, PG_ROLE_PASSWORD
from tests.support.bank import ACCOUNTS, TOTAL, add_documents, make_bank
from tests.support.recovery import pg_databases, snapshots
from tests.support.targets import local_target, s3_target, sftp_target
from tests.support.workspace import Workspace


def _init(workspace: Workspace, targets: list[dict]) -> None:
    make_bank(workspace.root / "bank.sqlite3")
    workspace.write_policy({"engine": "sqlite", "path": "bank.sqlite3"}, targets)
    result = workspace.opsctl("init")
    assert result.returncode == 0, result.output


def _backup(workspace: Workspace) -> None:
    result = workspace.opsctl("backup")
    assert result.returncode == 0, result.output


def _restore_json(workspace: Workspace, *args: str) -> dict:
    result = workspace.opsctl("--json", "restore", "--yes", *args)
    assert result.returncode == 0, result.output
    return json.loads(result.stdout)


def _bank_totals(path) -> tuple[int, int]:
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute("SELECT count(*), sum(balance) FROM accounts").fetchone()


def _restored_copies(workspace: Workspace) -> list[Path]:
    return sorted(workspace.root.glob("bank.restored_*.sqlite3"))


def _target_paths(workspace: Workspace) -> dict[str, str]:
    policy = yaml.safe_load((workspace.root / "policy.yaml").read_text())
    return {target["name"]: target.get("path") for target in policy["targets"]}


def test_site_lost_restores_from_offsite_with_only_the_policy_and_its_secrets(workspace, sftp_endpoint, s3_endpoint):
    _init(workspace, [local_target(), sftp_target(sftp_endpoint), s3_target(s3_endpoint, workspace)])
    add_documents(workspace.root / "bank.sqlite3", 20)
    _backup(workspace)
    taken = snapshots(workspace, "offsite")[-1]

    # The site is gone: the database, the local repository, the NAS's, opsctl's state and restic's cache.
    paths = _target_paths(workspace)
    for lost in (workspace.root / paths["local"], Path(paths["nas"]), workspace.root / "state",
                 workspace.root / ".cache"):
        assert lost.exists(), lost
        shutil.rmtree(lost)
    (workspace.root / "bank.sqlite3").unlink()

    result = workspace.opsctl("restore", "--yes")
    assert result.returncode == 0, result.output
    plan = result.stderr
    assert re.search(r"from +offsite \(s3 http://", plan), plan
    assert taken["short_id"] in plan
    not_used = [line.strip() for line in plan.splitlines() if "not used:" in line]
    assert len(not_used) == 2, plan
    assert any(line.startswith("not used: local:") for line in not_used), not_used
    assert any(line.startswith("not used: nas:") for line in not_used), not_used
    assert all("no restic repository" in line for line in not_used), "each says why"
    assert re.search(r"verified +yes", result.stdout), result.stdout
    assert "offsite" in result.stdout and "Traceback" not in result.output

    [restored] = _restored_copies(workspace)
    assert _bank_totals(restored) == (ACCOUNTS, TOTAL)
    with closing(sqlite3.connect(restored)) as conn:
        assert conn.execute("SELECT count(*) FROM documents").fetchone()[0] == 20
    assert restored.stat().st_mode & 0o777 == 0o600


@pytest.fixture
def generations(workspace) -> list[dict]:
    """Three snapshots at least 1.5 s apart; the n-th holds generations 1..n. Returns them, oldest first."""
    _init(workspace, [local_target()])
    with closing(sqlite3.connect(workspace.root / "bank.sqlite3")) as conn, conn:
        conn.execute("CREATE TABLE generation (n INTEGER)")
    for n in (1, 2, 3):
        with closing(sqlite3.connect(workspace.root / "bank.sqlite3")) as conn, conn:
            conn.execute("INSERT INTO generation VALUES (?)", (n,))
        if n > 1:
            age = (datetime.now(UTC) - snapshots(workspace)[-1]["time"]).total_seconds()
            time.sleep(max(0.0, 1.5 - age))
        _backup(workspace)
    taken = snapshots(workspace)
    assert len(taken) == 3
    return taken


def test_at_restores_the_newest_snapshot_taken_before_that_moment(workspace, generations):
    second, third = generations[1], generations[2]
    moment = second["time"] + (third["time"] - second["time"]) / 2
    result = _restore_json(workspace, "--at", moment.isoformat(), "--to", "at/bank.sqlite3")
    assert result["plan"]["snapshot_id"] == second["short_id"]
    with closing(sqlite3.connect(workspace.root / "at" / "bank.sqlite3")) as conn:
        assert [row[0] for row in conn.execute("SELECT n FROM generation ORDER BY n")] == [1, 2]

    exact = _restore_json(workspace, "--at", third["time"].isoformat(), "--to", "exact/bank.sqlite3")
    assert exact["plan"]["snapshot_id"] == third["short_id"], "a snapshot taken at that very moment counts"

    before = generations[0]["time"].replace(microsecond=0).timestamp() - 60
    too_early = datetime.fromtimestamp(before, UTC).isoformat()
    refused = workspace.opsctl("restore", "--yes", "--at", too_early, "--to", "early/bank.sqlite3")
    assert refused.returncode == 2, refused.output
    assert "no snapshot was taken at or before" in refused.stderr and "the oldest is" in refused.stderr
    assert "Traceback" not in refused.output
    assert not (workspace.root / "early").exists() or not any((workspace.root / "early").iterdir())


def test_restores_from_the_nearest_healthy_target(workspace, s3_endpoint):
    _init(workspace, [local_target(), s3_target(s3_endpoint, workspace)])
    _backup(workspace)

    near = _restore_json(workspace)
    assert near["plan"]["target"] == "local" and near["plan"]["others"] == []
    assert near["plan"]["reason"] == "the nearest target that answered"
    assert _bank_totals(near["destination"].removeprefix("file ")) == (ACCOUNTS, TOTAL)

    shutil.rmtree(workspace.root / _target_paths(workspace)["local"])
    far = _restore_json(workspace)
    assert far["plan"]["target"] == "offsite" and far["plan"]["snapshot_id"] == near["plan"]["snapshot_id"]
    [other] = far["plan"]["others"]
    assert other.startswith("local: "), other
    assert far["destination"] != near["destination"], "an earlier restored copy is never overwritten"
    assert _bank_totals(far["destination"].removeprefix("file ")) == (ACCOUNTS, TOTAL)
    assert len(_restored_copies(workspace)) == 2


def test_replace_keeps_the_previous_database_aside_and_says_how_to_undo(pg_policy, pg_server, pg_database):
    with pg_server.connect(pg_database, PG_ROLE, PG_ROLE_PASSWORD) as conn:
        conn.execute("CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL)")
        conn.execute("INSERT INTO accounts SELECT g, 1000 FROM generate_series(1, 300) g")
    _backup(pg_policy)
    existing = pg_database + "_reporting"
    pg_server.create_role_and_database(PG_ROLE, PG_ROLE_PASSWORD, existing)
    with pg_server.connect(existing, PG_ROLE, PG_ROLE_PASSWORD) as conn:
        conn.execute("CREATE TABLE precious (note text)")
        conn.execute("INSERT INTO precious VALUES ('written after the backup'), ('and this')")

    result = _restore_json(pg_policy, "--to", existing, "--replace")
    aside = result["moved_aside"]
    assert aside and aside != existing and aside in pg_databases(pg_server, existing)
    with pg_server.connect(aside, PG_ROLE, PG_ROLE_PASSWORD) as conn:
        assert conn.execute("SELECT count(*) FROM precious").fetchone()[0] == 2
    with pg_server.connect(existing, PG_ROLE, PG_ROLE_PASSWORD) as conn:
        assert conn.execute("SELECT count(*), sum(balance) FROM accounts").fetchone() == (300, 300_000)

    [undo] = [step for step in result["next_steps"] if aside in step]
    assert "undo" in undo.lower()
    statements = undo.split("in psql run ", 1)[1]
    with pg_server.connect() as conn:  # the runbook's own words, as the on-call engineer would paste them
        for statement in filter(None, (s.strip() for s in statements.split(";"))):
            conn.execute(statement)
    with pg_server.connect(existing, PG_ROLE, PG_ROLE_PASSWORD) as conn:
        assert conn.execute("SELECT count(*) FROM precious").fetchone()[0] == 2


def test_restoring_over_the_source_needs_its_name_typed_out(pg_policy, pg_server, pg_database):
    with pg_server.connect(pg_database, PG_ROLE, PG_ROLE_PASSWORD) as conn:
        conn.execute("CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL)")
        conn.execute("INSERT INTO accounts SELECT g, 1000 FROM generate_series(1, 300) g")
    _backup(pg_policy)
    with pg_server.connect(pg_database, PG_ROLE, PG_ROLE_PASSWORD) as conn:
        conn.execute("INSERT INTO accounts VALUES (301, 7)")  # written after the backup: must survive

    for extra in ((), ("--confirm-source", pg_database + "x")):
        refused = pg_policy.opsctl("restore", "--yes", "--to", pg_database, "--replace", *extra)
        assert refused.returncode == 2, refused.output
        assert "is the database this policy backs up" in refused.stderr
        assert f"--confirm-source {pg_database}" in refused.stderr
    assert pg_databases(pg_server, pg_database) == [pg_database]
    with pg_server.connect(pg_database, PG_ROLE, PG_ROLE_PASSWORD) as conn:
        assert conn.execute("SELECT count(*), sum(balance) FROM accounts").fetchone() == (301, 300_007)


def test_without_yes_and_without_a_terminal_nothing_is_restored(workspace):
    _init(workspace, [local_target()])
    _backup(workspace)
    result = workspace.opsctl("restore")
    assert result.returncode == 2, result.output
    assert "--yes" in result.stderr and "terminal" in result.stderr
    assert "Traceback" not in result.output
    assert _restored_copies(workspace) == []
    refusals = [e for e in map(json.loads, workspace.audit_lines()) if e["command"] == "restore"]
    assert [(e["outcome"], e["exit_code"]) for e in refusals] == [("refused", 2)], refusals
