"""opsctl drill: restore from the off-site copy into a scratch database, verify it, measure RTO and RPO, report.

Every expectation is measured here: the wall time around the `opsctl drill` process, the snapshot's
time as `opsctl snapshots` lists it, the rows the test wrote.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from tests.conftest import MY_PASSWORD, MY_USER, PG_ROLE, PG_ROLE_PASSWORD
from tests.support.bank import ACCOUNTS, make_bank
from tests.support.recovery import drill, drill_reports, mariadb_databases, pg_databases, snapshots, sqlite_scratch_left
from tests.support.targets import local_target, s3_target
from tests.support.workspace import Workspace

SCRATCH = "opsctl_drill_"
PHASES = ["locate", "fetch", "restore", "verify"]


@dataclass
class Protected:
    """A database with known rows, backed up to local + s3 (off-site), and a way to list drill leftovers."""

    workspace: Workspace
    engine: str
    rows: int
    leftovers: Callable[[], list]


def _init(workspace: Workspace, database: dict, targets: list[dict], **extra) -> None:
    workspace.write_policy(database, targets, **extra)
    result = workspace.opsctl("init")
    assert result.returncode == 0, result.output


def _postgres(request, workspace, targets, rows: int) -> Protected:
    server, name = request.getfixturevalue("pg_server"), request.getfixturevalue("pg_database")
    with server.connect(name, PG_ROLE, PG_ROLE_PASSWORD) as conn:
        conn.execute("CREATE TABLE accounts (id int PRIMARY KEY, owner text, balance bigint NOT NULL)")
        conn.execute("INSERT INTO accounts SELECT g, md5(g::text) || md5((g * 7)::text), 1000 "
                     "FROM generate_series(1, %s) g", (rows,))
    workspace.secret("db.pass", PG_ROLE_PASSWORD)
    _init(workspace, {"engine": "postgresql", "host": "127.0.0.1", "port": server.port, "user": PG_ROLE,
                      "password": {"file": "db.pass"}, "name": name}, targets)
    return Protected(workspace, "postgresql", rows, lambda: pg_databases(server, SCRATCH))


def _mariadb(request, workspace, targets, rows: int) -> Protected:
    server, name = request.getfixturevalue("mariadb_server"), request.getfixturevalue("my_database")
    with server.connect(name, MY_USER, MY_PASSWORD) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE accounts (id INT PRIMARY KEY, owner VARCHAR(64), balance BIGINT NOT NULL) "
                    "ENGINE=InnoDB")
        cur.executemany("INSERT INTO accounts VALUES (%s, %s, 1000)", [(i, f"owner {i}") for i in range(rows)])
    workspace.secret("db.pass", MY_PASSWORD)
    _init(workspace, {"engine": "mysql", "host": "127.0.0.1", "port": server.port, "user": MY_USER,
                      "password": {"file": "db.pass"}, "names": [name]}, targets)
    return Protected(workspace, "mysql", rows, lambda: mariadb_databases(server, SCRATCH))


def _sqlite(workspace, targets, **extra) -> Protected:
    make_bank(workspace.root / "bank.sqlite3")
    _init(workspace, {"engine": "sqlite", "path": "bank.sqlite3"}, targets, **extra)
    return Protected(workspace, "sqlite", ACCOUNTS, lambda: sqlite_scratch_left(workspace))


@pytest.fixture(params=["postgresql", "mysql", "sqlite"])
def protected(request, workspace, s3_endpoint) -> Protected:
    targets = [local_target(), s3_target(s3_endpoint, workspace)]
    if request.param == "postgresql":
        return _postgres(request, workspace, targets, rows=2_000)
    if request.param == "mysql":
        return _mariadb(request, workspace, targets, rows=2_000)
    return _sqlite(workspace, targets)


@pytest.fixture
def sqlite_bank(workspace, s3_endpoint) -> Protected:
    return _sqlite(workspace, [local_target(), s3_target(s3_endpoint, workspace)])


def _backup(workspace: Workspace) -> dict:
    """Back up, and return the snapshot the off-site target now holds (its time as opsctl lists it)."""
    result = workspace.opsctl("backup")
    assert result.returncode == 0, result.output
    return snapshots(workspace, "offsite")[-1]


def _set_objectives(workspace: Workspace, **objectives: str) -> None:
    path = workspace.root / "policy.yaml"
    policy = yaml.safe_load(path.read_text())
    policy["objectives"] = objectives
    path.write_text(yaml.safe_dump(policy, sort_keys=False))


def _assert_report_files_intact(workspace: Workspace, report: dict) -> None:
    assert [p.rsplit(".", 1)[1] for p in report["files"]] == ["json", "html"]
    for path in report["files"]:
        checked = workspace.opsctl("report", "verify", path)
        assert checked.returncode == 0, checked.output
        assert "intact" in checked.stdout and report["sha256"] in checked.stdout


def test_drill_from_s3_passes_and_measures_rto_and_rpo(protected):
    ws = protected.workspace
    snapshot = _backup(ws)
    run = drill(ws)
    assert run.result.returncode == 0, run.result.output
    report = run.payload

    assert report["verdict"] == "PASSED", report["summary"]
    assert report["target"] == "offsite" and report["offsite"] is True
    assert report["met"] == {"rto": True, "rpo": True}
    rto, rpo = report["measured"]["rto_s"], report["measured"]["rpo_s"]
    assert 0 < rto <= run.wall_s, (rto, run.wall_s)
    # The drill started somewhere inside the process the test timed: RPO is the snapshot's age then.
    age_at_launch = (run.started - snapshot["time"]).total_seconds()
    assert age_at_launch - 1 <= rpo <= age_at_launch + run.wall_s, (rpo, age_at_launch, run.wall_s)

    assert [phase["name"] for phase in report["phases"]] == PHASES
    phases_s = sum(phase["seconds"] for phase in report["phases"])
    # RTO also covers what lies between the phases (starting restic, creating the scratch database).
    assert phases_s <= rto + 0.01 and rto - phases_s <= max(1.0, 0.2 * rto), (phases_s, rto)
    assert abs(sum(phase["share"] for phase in report["phases"]) - 1) < 0.01

    [database] = report["databases"]
    assert database["verdict"] == "PASSED" and database["problems"] == []
    assert database["snapshot_id"] == snapshot["short_id"] and database["engine"] == protected.engine
    assert database["rows"] == protected.rows
    started_at = datetime.fromisoformat(report["started_at"])  # whole seconds
    assert run.started - timedelta(seconds=1) <= started_at <= run.started + timedelta(seconds=run.wall_s)

    _assert_report_files_intact(ws, report)
    assert protected.leftovers() == [], "the scratch database must be dropped after the drill"
    [audit] = [entry for entry in map(json.loads, ws.audit_lines()) if entry["command"] == "drill"]
    assert audit["details"]["report_sha256"] == report["sha256"] and audit["outcome"] == "ok"


@pytest.fixture
def large_postgres(request, workspace, s3_endpoint) -> Protected:
    """Big enough that fetching, restoring and verifying it takes seconds, not milliseconds."""
    return _postgres(request, workspace, [local_target(), s3_target(s3_endpoint, workspace)], rows=500_000)


def test_an_impossible_rto_fails_the_drill_and_says_what_to_do(large_postgres):
    ws = large_postgres.workspace
    _set_objectives(ws, rto="1s", rpo="24h")
    _backup(ws)
    run = ws.opsctl("drill")  # as a person at a terminal runs it
    assert run.returncode == 1, run.output
    [path] = drill_reports(ws)
    report = json.loads(path.read_text())

    assert report["verdict"] == "FAILED"
    assert report["objectives"]["rto_s"] == 1
    assert report["met"] == {"rto": False, "rpo": True}
    assert report["measured"]["rto_s"] > 1
    assert report["databases"][0]["verdict"] == "PASSED", "the restore itself was proven; only the objective was missed"
    assert re.search(r"RTO \S+ EXCEEDS 1(\.0)?s", report["summary"]), report["summary"]
    [advice] = report["advice"]
    slowest = max(report["phases"], key=lambda phase: phase["seconds"])
    assert advice.startswith("RTO ") and re.search(r"exceeds 1(\.0)?s", advice), advice
    assert f"{slowest['share']:.0%} of it" in advice, (advice, slowest)
    assert "consider" in advice or "opsctl restore" in advice or "check" in advice, advice

    # What the person reads: the verdict first, the missed objective, what to do, the files.
    assert run.stdout.startswith("Drill FAILED"), run.stdout
    assert re.search(r"RTO .* objective +1(\.0)?s +MISSED", run.stdout), run.stdout
    assert "what to do: RTO" in run.stdout and str(path) in run.stdout
    assert large_postgres.leftovers() == []


def test_no_offsite_target_and_no_target_option_is_refused(workspace):
    _sqlite(workspace, [local_target()])
    assert workspace.opsctl("backup").returncode == 0
    result = workspace.opsctl("drill")
    assert result.returncode == 2, result.output
    assert "off-site" in result.stderr and "offsite: true" in result.stderr and "--target" in result.stderr
    assert "Traceback" not in result.output
    assert drill_reports(workspace) == []

    chosen = drill(workspace, "--target", "local")  # what the message offers
    assert chosen.result.returncode == 0, chosen.result.output
    assert chosen.payload["target"] == "local" and chosen.payload["offsite"] is False


def test_history_lists_a_passed_and_a_failed_drill_and_the_report_charts_both(sqlite_bank):
    ws = sqlite_bank.workspace
    snapshot = _backup(ws)
    first = drill(ws)
    assert first.result.returncode == 0, first.result.output

    _set_objectives(ws, rto="4h", rpo="1s")
    time.sleep(max(0.0, 2 - (datetime.now(UTC) - snapshot["time"]).total_seconds()))
    second = drill(ws)
    assert second.result.returncode == 1, second.result.output
    failed = second.payload
    assert failed["verdict"] == "FAILED" and failed["met"] == {"rto": True, "rpo": False}
    assert failed["measured"]["rpo_s"] > 1
    assert re.search(r"RPO \S+ EXCEEDS 1(\.0)?s", failed["summary"]), failed["summary"]
    [advice] = failed["advice"]
    assert advice.startswith("RPO ") and "Back up at least every" in advice
    assert "opsctl snapshots --target offsite" in advice

    listed = ws.opsctl("--json", "drill", "--history")
    assert listed.returncode == 0, listed.output
    rows = json.loads(listed.stdout)["drills"]
    assert [row["verdict"] for row in rows] == ["PASSED", "FAILED"]
    assert rows[0]["time"] <= rows[1]["time"], "newest last"
    for row, report in zip(rows, (first.payload, failed), strict=True):
        assert (row["rto_s"], row["rpo_s"]) == (report["measured"]["rto_s"], report["measured"]["rpo_s"])
        assert row["target"] == "offsite" and row["snapshots"] == [snapshot["short_id"]]
        assert row["report"] == report["files"][0]
    assert rows[1]["rpo_objective_s"] == 1

    assert [(p["rto_s"], p["rpo_s"], p["verdict"]) for p in failed["trend"]] == [
        (first.payload["measured"]["rto_s"], first.payload["measured"]["rpo_s"], "PASSED"),
        (failed["measured"]["rto_s"], failed["measured"]["rpo_s"], "FAILED")]
    text = ws.opsctl("drill", "--history")
    assert text.returncode == 0, text.output
    assert text.stdout.index("PASSED") < text.stdout.index("FAILED")

    doctor = ws.opsctl("doctor")  # the last drill at a glance, with where its report is
    assert "off-site copy: offsite" in doctor.stdout
    assert "last drill: FAILED" in doctor.stdout and failed["files"][0] in doctor.stdout


def test_a_restore_that_cannot_be_proven_fails_and_measures_nothing(request, workspace, s3_endpoint):
    protected = _postgres(request, workspace, [local_target(), s3_target(s3_endpoint, workspace)], rows=500)
    _backup(workspace)
    run = drill(workspace, tamper="UPDATE accounts SET balance = balance + 1 WHERE id = 1")
    assert run.result.returncode == 1, run.result.output
    report = run.payload
    assert report["verdict"] == "FAILED"
    assert report["measured"] == {"rto_s": None, "rpo_s": None}
    assert report["met"] == {"rto": None, "rpo": None}
    [database] = report["databases"]
    assert database["verdict"] == "FAILED"
    assert any("accounts" in problem and "same row count" in problem for problem in database["problems"])
    assert "could not be proven" in report["summary"] and "accounts" in report["summary"]
    assert any("What to do" in advice for advice in report["advice"]), report["advice"]
    _assert_report_files_intact(workspace, report)
    assert protected.leftovers() == [], "a failed drill must drop its scratch database too"
