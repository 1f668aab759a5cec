"""Faults in the middle of a run: the other targets finish, exit 3 names the target, the next run recovers."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.test_three_targets import snapshot_ids
from tests.support.bank import add_documents, make_bank
from tests.support.targets import local_target, s3_target, sftp_target
from tests.support.workspace import REPO_ROOT


def start_backup(ws) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "XDG_CACHE_HOME": str(ws.root / ".cache")}
    return subprocess.Popen([sys.executable, "-m", "opsctl", "--json", "--policy", str(ws.root / "policy.yaml"),
                             "backup"], cwd=ws.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_until(condition, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.fixture
def three(workspace, sftp_endpoint, s3_endpoint):
    make_bank(workspace.root / "bank.sqlite3")
    nas, offsite = sftp_target(sftp_endpoint), s3_target(s3_endpoint, workspace)
    workspace.write_policy({"engine": "sqlite", "path": "bank.sqlite3"}, [local_target(), nas, offsite],
                           lock_wait="3s")
    assert workspace.opsctl("init").returncode == 0
    add_documents(workspace.root / "bank.sqlite3", 600)
    workspace.nas_path, workspace.bucket = nas["path"], offsite["bucket"]
    return workspace


def _nas_packs(ws) -> int:
    return sum(len(files) for _, _, files in os.walk(os.path.join(ws.nas_path, "data")))


def _s3_packs(ws, moto) -> int:
    try:
        listed = moto.client().list_objects_v2(Bucket=ws.bucket, Prefix="crm/data/")
    except Exception:  # noqa: BLE001 - moto may be mid-request
        return 0
    return listed.get("KeyCount", 0)


@pytest.mark.parametrize("victim", ["nas", "offsite"])
def test_a_target_vanishing_mid_copy_fails_alone_and_the_next_run_completes_it(three, victim, sftp_endpoint,
                                                                                s3_endpoint):
    proc = start_backup(three)
    if victim == "nas":
        wait_until(lambda: _nas_packs(three) >= 2, "the copy to the NAS")
        sftp_endpoint.stop()
    else:
        wait_until(lambda: _s3_packs(three, s3_endpoint) >= 2, "the copy to S3")
        s3_endpoint.stop()
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 3, out + err
    rows = {row["target"]: row for row in json.loads(out)["targets"]}
    assert f"the connection to {victim} (" in rows[victim]["error"] and "was lost" in rows[victim]["error"]
    assert all(rows[name]["error"] is None for name in rows if name != victim)

    if victim == "nas":
        sftp_endpoint.restart()
        result = three.opsctl("backup")
        assert result.returncode == 0, result.output
        assert snapshot_ids(three, "nas") == snapshot_ids(three, "local")
    else:  # moto forgets everything when it stops: the bucket is gone, which opsctl must say plainly
        s3_endpoint.start()
        result = three.opsctl("backup")
        assert result.returncode == 3
        assert "the bucket" in result.stdout and "does not exist" in result.stdout
        # As after losing a real bucket: init makes a new replica from the primary, and all is whole again.
        assert three.opsctl("init").returncode == 0
        result = three.opsctl("backup")
        assert result.returncode == 0, result.output
        assert snapshot_ids(three, "offsite") == snapshot_ids(three, "local")


def test_a_full_local_disk_fails_that_target_and_the_next_one_becomes_primary(workspace, small_disk):
    make_bank(workspace.root / "bank.sqlite3")
    workspace.write_policy({"engine": "sqlite", "path": "bank.sqlite3"},
                           [{"name": "small", "kind": "local", "path": str(small_disk.path / "crm")},
                            local_target("second")], lock_wait="2s")
    assert workspace.opsctl("init").returncode == 0
    add_documents(workspace.root / "bank.sqlite3", 60)  # 4 MiB that do not compress: more than the disk has left
    filler = small_disk.fill(leave_bytes=64 * 1024)

    result = workspace.opsctl("backup")
    assert result.returncode == 3, result.output
    assert "small (local" in result.stdout and "full" in result.stdout
    assert len(snapshot_ids(workspace, "second")) == 1

    filler.unlink()
    result = workspace.opsctl("backup")
    assert result.returncode == 0, result.output
    assert len(snapshot_ids(workspace, "small")) == 1
    assert len(snapshot_ids(workspace, "second")) == 2


def test_a_mount_target_refuses_a_folder_that_is_not_mounted(workspace):
    make_bank(workspace.root / "bank.sqlite3")
    workspace.write_policy({"engine": "sqlite", "path": "bank.sqlite3"},
                           [{"name": "nas", "kind": "mount", "path": "not-mounted/crm"}])
    result = workspace.opsctl("init")
    assert result.returncode == 1, result.output
    assert "no share is mounted" in result.stdout and "mount -a" in result.stdout
    assert not (workspace.root / "not-mounted").exists(), "nothing may be written to the root disk"


def test_check_finds_a_damaged_pack(three):
    assert three.opsctl("backup").returncode == 0
    packs = [os.path.join(d, f) for d, _, files in os.walk(three.root / "repo-local" / "data") for f in files]
    victim = max(packs, key=os.path.getsize)
    os.chmod(victim, 0o600)
    with open(victim, "r+b") as handle:
        handle.seek(os.path.getsize(victim) // 2)
        handle.write(b"\0" * 64)
    result = three.opsctl("--json", "check", "--read-data-subset", "100%")
    assert result.returncode == 3, result.output
    rows = {row["target"]: row for row in json.loads(result.stdout)["targets"]}
    assert not rows["local"]["ok"] and "damaged" in rows["local"]["summary"]
    assert rows["nas"]["ok"] and rows["offsite"]["ok"]


def test_a_damaged_primary_pack_is_never_copied(three):
    assert three.opsctl("backup").returncode == 0
    # A pack the NAS has lost, damaged on the primary's failing disk: the next backup must copy it, and may not.
    nas_data = Path(three.nas_path) / "data"
    lost = next(nas_data.glob("*/*"))
    lost.unlink()
    damaged = three.root / "repo-local" / "data" / lost.parent.name / lost.name
    damaged.chmod(0o600)
    with damaged.open("r+b") as handle:
        handle.seek(100)
        handle.write(b"XXXX")
    add_documents(three.root / "bank.sqlite3", 20)
    result = three.opsctl("backup")
    assert result.returncode == 3, result.output
    assert "does not match its checksum" in result.stdout and "nas" in result.stdout
    assert not lost.exists(), "a damaged pack reached the NAS"
    for pack in nas_data.glob("*/*"):
        assert hashlib.sha256(pack.read_bytes()).hexdigest() == pack.name, f"{pack} reached the NAS damaged"


def test_doctor_reports_each_target_and_names_the_problem(three, sftp_endpoint):
    healthy = three.opsctl("doctor")
    assert healthy.returncode == 0, healthy.output
    for words in ("restic 0.14", "bank.sqlite3 opens", "pinned by", "versioning", "a replica of local"):
        assert words in healthy.stdout, words
    sftp_endpoint.stop()
    sick = three.opsctl("doctor")
    assert sick.returncode == 1
    assert "PROBLEM" in sick.stdout and "nas (sftp" in sick.stdout and "cannot be reached" in sick.stdout


def test_a_hanging_nas_is_cut_off_after_the_stall_timeout(three, sftp_endpoint):
    from tests.support.sshd import freeze

    policy = (three.root / "policy.yaml").read_text().replace("lock_wait: 3s", "lock_wait: 3s\nstall_timeout: 4s")
    (three.root / "policy.yaml").write_text(policy)
    freeze(sftp_endpoint)  # a NAS that accepts TCP but answers nothing: no error ever comes back
    try:
        started = time.monotonic()
        proc = start_backup(three)
        out, err = proc.communicate(timeout=120)
        waited = time.monotonic() - started
    finally:
        freeze(sftp_endpoint, signal.SIGCONT)
    assert proc.returncode == 3, out + err
    rows = {row["target"]: row for row in json.loads(out)["targets"]}
    assert "made no progress for 4 s and was cut off" in rows["nas"]["error"]
    assert rows["offsite"]["error"] is None and rows["local"]["error"] is None
    assert waited < 60
