"""3-2-1 for real: one dump into the first healthy target, copied to a NAS over SFTP and to S3."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing

import pytest

from tests.support.bank import ACCOUNTS, TOTAL, add_documents, make_bank
from tests.support.targets import local_target, s3_target, sftp_target
from tests.support.workspace import REPO_ROOT


@pytest.fixture
def three(workspace, sftp_endpoint, s3_endpoint):
    """A SQLite bank protected by local + sftp + s3 targets, initialised."""
    make_bank(workspace.root / "bank.sqlite3")
    workspace.write_policy({"engine": "sqlite", "path": "bank.sqlite3"},
                           [local_target(), sftp_target(sftp_endpoint), s3_target(s3_endpoint, workspace)],
                           lock_wait="3s")
    result = workspace.opsctl("init")
    assert result.returncode == 0, result.output
    assert "replica of local created" in result.stdout
    return workspace


def backup_json(ws) -> tuple[int, dict]:
    result = ws.opsctl("--json", "backup")
    return result.returncode, {row["target"]: row for row in json.loads(result.stdout)["targets"]}


def snapshot_ids(ws, target: str) -> list[str]:
    result = ws.opsctl("--json", "snapshots", "--target", target)
    assert result.returncode == 0, result.output
    return sorted(row["id"] for row in json.loads(result.stdout)["snapshots"])


def assert_restores(ws, target: str, name: str) -> None:
    result = ws.opsctl("restore", "--yes", "--target", target, "--to", f"restored/{name}.sqlite3")
    assert result.returncode == 0, result.output
    with closing(sqlite3.connect(ws.root / "restored" / f"{name}.sqlite3")) as conn:
        assert conn.execute("SELECT count(*), sum(balance) FROM accounts").fetchone() == (ACCOUNTS, TOTAL)


def test_every_target_holds_the_same_snapshot_and_restores(three):
    add_documents(three.root / "bank.sqlite3", 40)
    code, rows = backup_json(three)
    assert code == 0, rows
    assert [rows[n]["role"] for n in ("local", "nas", "offsite")] == ["primary", "replica", "replica"]
    made = {name: row["snapshots"][0] for name, row in rows.items()}
    assert len({m["snapshot_id"] for m in made.values()}) == 1
    assert len({m["manifest_sha256"] for m in made.values()}) == 1
    assert rows["nas"]["bytes_added"] > 0 and rows["offsite"]["bytes_added"] > 0

    checked = three.opsctl("--json", "check", "--read-data-subset", "100%")
    assert checked.returncode == 0, checked.output
    assert all(row["ok"] for row in json.loads(checked.stdout)["targets"])
    for target in ("local", "nas", "offsite"):
        assert_restores(three, target, target)

    # A second run copies only what is new; replicas still match the primary exactly.
    code, again = backup_json(three)
    assert code == 0, again
    assert again["nas"]["bytes_added"] < rows["nas"]["bytes_added"]
    assert snapshot_ids(three, "local") == snapshot_ids(three, "nas") == snapshot_ids(three, "offsite")


def test_nas_down_before_the_backup_is_partial_then_caught_up(three, sftp_endpoint):
    sftp_endpoint.stop()
    code, rows = backup_json(three)
    assert code == 3
    assert rows["local"]["error"] is None and rows["offsite"]["error"] is None
    assert "nas (sftp" in rows["nas"]["error"] and "cannot be reached" in rows["nas"]["error"]
    sftp_endpoint.restart()
    code, rows = backup_json(three)
    assert code == 0, rows
    assert snapshot_ids(three, "nas") == snapshot_ids(three, "local")
    assert len(snapshot_ids(three, "nas")) == 2


def test_s3_down_and_a_changed_host_key_fail_only_their_targets(three, sftp_endpoint, s3_endpoint):
    s3_endpoint.stop()
    sftp_endpoint.rotate_host_key()
    result = three.opsctl("backup")
    assert result.returncode == 3, result.output
    assert "DIFFERENT host key" in result.stdout and "ssh-keyscan" in result.stdout
    assert "offsite (s3 http://127.0.0.1" in result.stdout and "cannot be reached" in result.stdout
    assert len(snapshot_ids(three, "local")) == 1


def test_primary_down_makes_the_next_target_primary(three):
    (three.root / "repo-local").rename(three.root / "repo-local.away")
    code, rows = backup_json(three)
    assert code == 3
    assert rows["nas"]["role"] == "primary" and rows["offsite"]["role"] == "replica"
    assert rows["nas"]["snapshots"][0]["snapshot_id"] == rows["offsite"]["snapshots"][0]["snapshot_id"]


def test_missing_bucket_is_named(workspace, s3_endpoint):
    make_bank(workspace.root / "bank.sqlite3")
    workspace.write_policy({"engine": "sqlite", "path": "bank.sqlite3"},
                           [s3_target(s3_endpoint, workspace, bucket="never-created-bucket")])
    result = workspace.opsctl("backup")
    assert result.returncode == 1
    assert "the bucket never-created-bucket does not exist" in result.stdout
    assert "opsctl init" in result.stdout


def test_replication_killed_midway_leaves_targets_openable_and_the_next_run_completes_it(three):
    add_documents(three.root / "bank.sqlite3", 600)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "XDG_CACHE_HOME": str(three.root / ".cache")}
    proc = subprocess.Popen([sys.executable, "-m", "opsctl", "--policy", str(three.root / "policy.yaml"), "backup"],
                            cwd=three.root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    nas = next(t for t in json.loads(json.dumps(_policy(three)))["targets"] if t["name"] == "nas")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and _data_files(nas["path"]) < 3:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _data_files(nas["path"]) >= 3, "the copy to the NAS never started"

    for target in ("local", "nas", "offsite"):
        snapshot_ids(three, target)  # each opens; asserts exit 0
    code, rows = backup_json(three)
    assert code == 0, rows
    assert snapshot_ids(three, "local") == snapshot_ids(three, "nas") == snapshot_ids(three, "offsite")
    checked = three.opsctl("check", "--read-data-subset", "100%")
    assert checked.returncode == 0, checked.output


def test_packs_reach_the_replicas_before_the_backup_ends_and_alone_they_change_nothing(workspace):
    make_bank(workspace.root / "bank.sqlite3")
    workspace.write_policy({"engine": "sqlite", "path": "bank.sqlite3"}, [local_target(), local_target("nas")])
    assert workspace.opsctl("init").returncode == 0
    add_documents(workspace.root / "bank.sqlite3", 40)
    # Killed once every dump is in the primary, before the copies are told to finish: a pack is on the
    # replica already (the harness waits for one), so the copy overlapped the backup instead of following it.
    killed = workspace.opsctl("backup", env={"OPSCTL_TEST_KILL_AT": "backed-up",
                                             "OPSCTL_TEST_KILL_ONCE_PACKS_IN": str(workspace.root / "repo-nas")})
    assert killed.returncode == -9, killed.output
    nas = workspace.root / "repo-nas"
    assert _data_files(str(nas)) >= 1
    assert not any((nas / "index").iterdir()) and not any((nas / "snapshots").iterdir()), \
        "index files and snapshots reach a replica only once the backup has ended, after their packs"
    assert snapshot_ids(workspace, "nas") == []

    code, rows = backup_json(workspace)
    assert code == 0, rows
    assert snapshot_ids(workspace, "local") == snapshot_ids(workspace, "nas") != []
    assert_restores(workspace, "nas", "nas")


def _policy(ws) -> dict:
    import yaml
    return yaml.safe_load((ws.root / "policy.yaml").read_text())


def _data_files(path: str) -> int:
    return sum(len(files) for _, _, files in os.walk(os.path.join(path, "data")))


def test_leftovers_of_a_killed_restic_are_not_copied_and_nas_files_are_private(three):
    assert three.opsctl("backup").returncode == 0
    # restic writes data/xx/ID-tmp-N and renames it when complete; a killed restic leaves it behind.
    folder = next((three.root / "repo-local" / "data").iterdir())
    (folder / (folder.name + "0" * 62 + "-tmp-123")).write_bytes(b"half a pack")
    code, rows = backup_json(three)
    assert code == 0, rows
    nas = _policy(three)["targets"][1]["path"]
    modes = {os.stat(os.path.join(d, f)).st_mode & 0o777 for d, _, files in os.walk(nas) for f in files}
    assert modes == {0o600}, f"files on the NAS must not be readable by other accounts: {sorted(map(oct, modes))}"


def test_a_replica_never_gets_back_a_snapshot_its_own_retention_removed(three):
    policy = _policy(three)
    policy["targets"][1]["retention"] = {"keep_last": 1}
    import yaml
    (three.root / "policy.yaml").write_text(yaml.safe_dump(policy))
    for _ in range(2):
        assert three.opsctl("backup").returncode == 0
    assert three.opsctl("prune", "--target", "nas").returncode == 0
    assert len(snapshot_ids(three, "nas")) == 1
    assert three.opsctl("backup").returncode == 0
    assert len(snapshot_ids(three, "nas")) == 2, "the forgotten snapshot came back"
    assert len(snapshot_ids(three, "local")) == 3
    doctor = three.opsctl("doctor")
    assert "retention of nas" in doctor.stdout and "keeps less than local" in doctor.stdout


def test_verify_on_every_target_proves_the_same_backup(three):
    assert three.opsctl("backup").returncode == 0
    result = three.opsctl("verify", "--all-targets")
    assert result.returncode == 0, result.output
    assert "Verification PASSED" in result.stdout and "3 targets" in result.stdout
    reports = list((three.root / "state" / "reports").glob("*.json"))
    assert len(reports) == 1 and three.opsctl("report", "verify", str(reports[0])).returncode == 0
    text = reports[0].read_text()
    for target in ("local (local", "nas (sftp", "offsite (s3"):
        assert target in text, target
