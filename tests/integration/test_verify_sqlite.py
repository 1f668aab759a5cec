"""opsctl verify on SQLite: a round trip on awkward data, every kind of tampering detected, reports intact."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from contextlib import closing

import pytest

from opsctl.reports import sealed
from tests.support.targets import local_target
from tests.support.verification import CANARY, assert_detected, assert_no_canary, latest_report, reports, verify
from tests.support.workspace import REPO_ROOT

ODD = 'odd "name" ü 表'
SCHEMA = f"""
CREATE TABLE "{ODD.replace('"', '""')}" (id INTEGER PRIMARY KEY AUTOINCREMENT, note TEXT, amount REAL, blob BLOB);
CREATE TABLE no_key (label TEXT, n INTEGER);
CREATE TABLE empty_one (v TEXT);
CREATE INDEX no_key_label ON no_key(label);
CREATE VIEW twins AS SELECT * FROM no_key WHERE label = 'twin';
CREATE TRIGGER keep_positive BEFORE INSERT ON no_key WHEN NEW.n < 0 BEGIN SELECT RAISE(ABORT, 'negative'); END;
"""


@pytest.fixture
def awkward(workspace):
    with closing(sqlite3.connect(workspace.root / "crm.sqlite3")) as conn, conn:
        conn.executescript(SCHEMA)
        conn.executemany(f'INSERT INTO "{ODD.replace(chr(34), chr(34) * 2)}" (note, amount, blob) VALUES (?, ?, ?)',
                         [(CANARY, 1.5, b"\x00\xff"), ("", 0.1, None), (None, -2.0, b""), ("tab\t'q'", 1e300, b"x")])
        conn.executemany("INSERT INTO no_key VALUES (?, ?)", [("twin", 1), ("twin", 1), (CANARY, 2)])
    workspace.write_policy({"engine": "sqlite", "path": "crm.sqlite3"})
    assert workspace.opsctl("init").returncode == 0
    backup = workspace.opsctl("backup")
    assert backup.returncode == 0, backup.output
    return workspace


def test_verify_passes_and_writes_intact_reports(awkward):
    result = verify(awkward)
    assert result.returncode == 0, result.output
    assert "Verification PASSED" in result.stdout
    report = latest_report(awkward)
    assert report["verdict"] == "PASSED"
    tables = {t["name"]: t for t in report["targets"][0]["tables"]}
    assert tables[ODD]["rows_expected"] == tables[ODD]["rows_actual"] == 4
    assert tables["no_key"]["fingerprint"] == "match"
    assert tables["empty_one"]["rows_actual"] == 0
    for path in reports(awkward):
        check = awkward.opsctl("report", "verify", str(path))
        assert check.returncode == 0 and "intact" in check.stdout, check.output
    listing = awkward.opsctl("--json", "report", "list")
    assert json.loads(listing.stdout)["reports"][0]["verdict"] == "PASSED"
    assert not list((awkward.root / "state" / "tmp").glob("*")), "the scratch copy was left behind"
    assert_no_canary(awkward, result.output, listing.output)


def test_a_changed_report_is_found(awkward):
    assert verify(awkward).returncode == 0
    for path in reports(awkward):
        path.write_text(path.read_text().replace("PASSED", "FAILED", 1))
        check = awkward.opsctl("report", "verify", str(path))
        assert check.returncode == 1 and "ALTERED" in check.stdout, check.output


def test_a_failed_report_edited_to_passed_and_rehashed_disagrees_with_the_audit_trail(awkward):
    assert verify(awkward, tamper="DROP TABLE empty_one").returncode == 1
    path = next(p for p in reports(awkward) if p.suffix == ".json")
    forged = sealed.hashed_content(json.loads(path.read_text()))
    forged.update(verdict="PASSED", summary="The restored database equals the backup.")
    # Written byte for byte as opsctl writes a report, so only the audit trail can tell.
    path.write_text(sealed.json_text({**forged, "sha256": sealed.content_sha256(forged)}), encoding="utf-8")
    check = awkward.opsctl("report", "verify", str(path))
    assert check.returncode == 1, check.output
    assert "ALTERED or foreign" in check.stdout and "with the verdict PASSED" in " ".join(check.stdout.split())
    assert json.loads(awkward.opsctl("--json", "report", "verify", str(path)).stdout)["audit_trail"] == "not recorded"
    # Without the policy there is no trail to ask: the check refuses to vouch for the report.
    alone = subprocess.run([sys.executable, "-m", "opsctl", "report", "verify", str(path)], cwd=path.parent,
                           env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, capture_output=True, text=True,
                           check=False)
    assert alone.returncode == 2 and "only the audit trail of the policy that wrote it" in alone.stderr, \
        alone.stdout + alone.stderr
    assert "Traceback" not in alone.stderr


@pytest.mark.parametrize(('tamper', 'names'), [
    (f"UPDATE \"{ODD.replace(chr(34), chr(34) * 2)}\" SET amount = 2.5 WHERE id = 1", f"table {ODD}: same row count"),
    ("DELETE FROM no_key WHERE rowid = (SELECT max(rowid) FROM no_key)", "table no_key: expected 3 rows"),
    ("DELETE FROM no_key WHERE rowid = (SELECT min(rowid) FROM no_key WHERE label = 'twin')", "table no_key"),
    (f"UPDATE \"{ODD.replace(chr(34), chr(34) * 2)}\" SET note = '' WHERE note IS NULL", f"table {ODD}: same row"),
    ("DROP TABLE empty_one", "table empty_one: missing"),
    ("UPDATE sqlite_sequence SET seq = 1", f"sequence {ODD}: behind the backup"),
])
def test_tampering_is_detected_naming_the_table(awkward, tamper, names):
    assert_detected(awkward, tamper, names)
    assert_no_canary(awkward)


def test_a_damaged_pack_fails_saying_the_repository_is_damaged(awkward):
    policy = awkward.root / "policy.yaml"
    policy.write_text(policy.read_text() + "verification:\n  read_data_subset: 100%\n")
    packs = sorted((p for p in (awkward.root / "repo-local" / "data").rglob("*") if p.is_file()),
                   key=lambda p: p.stat().st_size)
    pack = packs[-1]
    data = bytearray(pack.read_bytes())
    data[len(data) // 2] ^= 0xFF
    pack.chmod(0o600)
    pack.write_bytes(bytes(data))
    result = verify(awkward)
    assert result.returncode == 1, result.output
    assert "the repository is damaged" in result.stdout
    assert latest_report(awkward)["verdict"] == "FAILED"


def test_a_snapshot_without_fingerprints_is_a_clear_message(workspace):
    with closing(sqlite3.connect(workspace.root / "crm.sqlite3")) as conn, conn:
        conn.execute("CREATE TABLE t (v)")
    workspace.write_policy({"engine": "sqlite", "path": "crm.sqlite3"})
    assert workspace.opsctl("init").returncode == 0
    assert workspace.opsctl("backup", env={"OPSCTL_TEST_NO_FINGERPRINTS": "1"}).returncode == 0
    result = verify(workspace)
    assert result.returncode == 1
    assert "was made before opsctl recorded fingerprints" in result.stdout
    assert "run opsctl backup, then verify the new snapshot" in result.stdout


def test_all_targets_prove_identical_backups_and_name_an_unreachable_one(workspace):
    with closing(sqlite3.connect(workspace.root / "crm.sqlite3")) as conn, conn:
        conn.execute("CREATE TABLE t (v)")
        conn.execute("INSERT INTO t VALUES (1), (1)")
    workspace.write_policy({"engine": "sqlite", "path": "crm.sqlite3"}, [local_target(), local_target("usb")])
    assert workspace.opsctl("init").returncode == 0
    assert workspace.opsctl("backup").returncode == 0
    result = verify(workspace, "--all-targets")
    assert result.returncode == 0, result.output
    assert "targets hold byte-identical backups" in result.stdout
    report = latest_report(workspace)
    assert report["targets_identical"] is True
    assert len({t["manifest_sha256"] for t in report["targets"]}) == 1
    shutil.rmtree(workspace.root / "repo-usb")
    result = verify(workspace, "--all-targets")
    assert result.returncode == 1
    assert "usb: FAILED" in result.stdout and "local: PASSED" in result.stdout
    assert "Traceback" not in result.output


def test_bad_options_exit_2(workspace):
    workspace.write_policy({"engine": "sqlite", "path": "crm.sqlite3"})
    assert workspace.opsctl("verify", "--all-targets", "--target", "local").returncode == 2
    assert workspace.opsctl("verify", "--target", "nowhere").returncode == 2
    missing = workspace.opsctl("report", "verify", "no-such-report.json")
    assert missing.returncode == 2 and "Traceback" not in missing.output
