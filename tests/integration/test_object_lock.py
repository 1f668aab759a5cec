"""Immutable off-site copies: an S3 target with object_lock, against moto's Object Lock emulation.

moto keeps COMPLIANCE locks the way AWS does (a locked version refuses deletion, a plain DELETE only
adds a delete marker) but answers get_object_retention with HTTP 500, so retention is read with
head_object here, as opsctl does. moto does not check Content-MD5 or IAM here: those are unit-tested.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from contextlib import closing
from datetime import UTC, datetime, timedelta

import botocore.exceptions
import pytest

from opsctl.policy.load import load_policy
from opsctl.targets import target_for
from tests.support.bank import ACCOUNTS, TOTAL, make_bank
from tests.support.moto import MotoServer
from tests.support.targets import local_target, s3_target
from tests.support.workspace import Workspace

LOCK = {"mode": "COMPLIANCE", "days": 2}
SQLITE = {"engine": "sqlite", "path": "bank.sqlite3"}


def locked_policy(ws: Workspace, moto: MotoServer, *, bucket: str | None = None, with_local: bool = True) -> dict:
    """A SQLite bank backed up to an S3 target with object_lock (after a local primary, unless with_local=False)."""
    make_bank(ws.root / "bank.sqlite3")
    offsite = s3_target(moto, ws, bucket=bucket, retention={"keep_daily": 1}, object_lock=LOCK)
    ws.write_policy(SQLITE, [local_target(), offsite] if with_local else [offsite])
    return offsite


def same_keys(ws: Workspace, moto: MotoServer):
    """A boto3 client with the very keys the policy gives opsctl (moto checks none; AWS would)."""
    keys = dict(line.split("=", 1) for line in (ws.root / "s3.env").read_text().split())
    return moto.client(keys)


def versions(client, bucket: str) -> tuple[set[tuple[str, str]], list[dict]]:
    """Every object version under the prefix as (key, version id), and the delete markers."""
    answer = client.list_object_versions(Bucket=bucket, Prefix="crm/")
    return ({(v["Key"], v["VersionId"]) for v in answer.get("Versions", [])}, answer.get("DeleteMarkers", []))


def visible(client, bucket: str) -> set[str]:
    """The keys a plain listing shows (what restic sees)."""
    return {o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix="crm/").get("Contents", [])}


def lock_check(ws: Workspace) -> dict:
    """doctor's "object lock" line for the S3 target, and doctor's exit code under "exit_code"."""
    result = ws.opsctl("--json", "doctor")
    document = json.loads(result.stdout)
    checks = [c for s in document["sections"] for c in s["checks"] if c["check"] == "object lock"]
    assert len(checks) == 1, result.output
    return {**checks[0], "exit_code": result.returncode}


def assert_locked(head: dict, days: int) -> None:
    assert head["ObjectLockMode"] == "COMPLIANCE"
    until = head["ObjectLockRetainUntilDate"].astimezone(UTC)
    assert timedelta(days=days, minutes=-5) < until - datetime.now(UTC) <= timedelta(days=days, seconds=1)


def test_init_creates_the_bucket_with_object_lock_and_doctor_sees_it(workspace, s3_endpoint):
    """restic's own files (its config and key) land locked for the policy's days; doctor reports the lock ok."""
    offsite = locked_policy(workspace, s3_endpoint, with_local=False)
    result = workspace.opsctl("init")
    assert result.returncode == 0, result.output
    client = s3_endpoint.client()
    lock = client.get_object_lock_configuration(Bucket=offsite["bucket"])["ObjectLockConfiguration"]
    assert lock["ObjectLockEnabled"] == "Enabled"
    assert lock["Rule"]["DefaultRetention"]["Mode"] == "COMPLIANCE" and lock["Rule"]["DefaultRetention"]["Days"] == 2
    key = client.list_objects_v2(Bucket=offsite["bucket"], Prefix="crm/keys/")["Contents"][0]["Key"]
    for name in ("crm/config", key):
        assert_locked(client.head_object(Bucket=offsite["bucket"], Key=name), days=2)

    fact = lock_check(workspace)
    assert fact["ok"] and fact["detail"] == "object lock COMPLIANCE, 2 days" and fact["hint"] is None, fact
    assert fact["exit_code"] == 0, fact


def test_an_existing_bucket_without_object_lock_is_refused_and_doctor_says_what_is_missing(workspace, s3_endpoint):
    bucket = s3_endpoint.create_bucket(f"plain-{uuid.uuid4().hex[:10]}")
    locked_policy(workspace, s3_endpoint, bucket=bucket, with_local=False)
    result = workspace.opsctl("init")
    assert result.returncode == 2, result.output  # bad input: the policy asks what the bucket cannot give
    assert "Traceback" not in result.output
    assert (f"the policy's object_lock asks for COMPLIANCE, 2 days, but the bucket {bucket} has no Object Lock; "
            "nothing was written to it") in result.output
    assert "put-bucket-versioning" in result.output and "only when a bucket is created" in result.output
    assert versions(s3_endpoint.client(), bucket) == (set(), [])

    fact = lock_check(workspace)
    assert not fact["ok"] and fact["detail"] == "object lock off", fact
    assert "has no Object Lock" in fact["hint"] and "put-object-lock-configuration" in fact["hint"], fact
    assert fact["exit_code"] == 1


def test_a_repository_already_in_an_unlocked_bucket_is_not_called_immutable(workspace, s3_endpoint):
    """The lock is asked for after the repository exists: init says the bucket lacks it, status does not count it."""
    offsite = locked_policy(workspace, s3_endpoint)
    unlocked = {key: value for key, value in offsite.items() if key != "object_lock"}
    workspace.write_policy(SQLITE, [local_target(), unlocked])
    assert workspace.opsctl("init").returncode == 0
    workspace.write_policy(SQLITE, [local_target(), offsite], compliance={"rules": ["3-2-1-1-0"]})
    result = workspace.opsctl("init")
    assert result.returncode == 3, result.output  # the local target is fine, the bucket is not
    assert "its storage keeps object lock off, less than the policy's object_lock asks" in result.output, result.output

    status = json.loads(workspace.opsctl("status", "--json").stdout)
    row = next(t for t in status["targets"] if t["target"] == "offsite")
    assert row["immutable"] is False and "has no Object Lock" in row["lock_hint"], row
    rule = next(r for r in status["rules"] if r["rule"] == "3-2-1-1-0")
    assert rule["status"] == "FAIL" and "no immutable or offline copy" in rule["reason"], rule


def test_a_locked_replica_survives_the_same_keys_deleting_everything_and_still_restores(workspace, s3_endpoint):
    """Someone with the policy's S3 keys tries to destroy the off-site replica.

    First every object version is deleted by its VersionId (with BypassGovernanceRetention too): COMPLIANCE
    refuses each. Then every key gets a plain DELETE: that succeeds, but only hides the files behind delete
    markers; restic would now see an empty repository. Whoever cleans up removes the delete markers (S3
    allows that, locked or not), and restore from that target brings the bank back unchanged.
    """
    offsite = locked_policy(workspace, s3_endpoint)
    bucket = offsite["bucket"]
    for command in ("init", "backup"):
        result = workspace.opsctl(command)
        assert result.returncode == 0, result.output
    attacker = same_keys(workspace, s3_endpoint)
    stored, markers = versions(attacker, bucket)
    packs = sorted(key for key, _ in stored if key.startswith("crm/data/"))
    assert packs and not markers
    assert_locked(attacker.head_object(Bucket=bucket, Key=packs[0]), days=2)  # replication's own PUTs are locked
    snapshot = next(key for key, _ in stored if key.startswith("crm/snapshots/")).rsplit("/", 1)[1]
    state = target_for(load_policy(workspace.root / "policy.yaml").targets[1]).immutability(snapshot)
    assert state is not None and state.locked and state.mode == "COMPLIANCE" and state.days == 2, state
    assert state.until is not None and timedelta(days=1) < state.until - datetime.now(UTC) < timedelta(days=2, hours=1)
    shown = json.loads(workspace.opsctl("status", "--json").stdout)
    row = next(t for t in shown["targets"] if t["target"] == "offsite")
    assert row["immutable"] is True and row["locked_until"] == state.until.isoformat(timespec="seconds"), row

    for key, version in sorted(stored):
        with pytest.raises(botocore.exceptions.ClientError, match="AccessDenied"):
            attacker.delete_object(Bucket=bucket, Key=key, VersionId=version, BypassGovernanceRetention=True)
    batch = attacker.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k, "VersionId": v} for k, v in stored]})
    assert not batch.get("Deleted") and len(batch["Errors"]) == len(stored)
    for key in sorted({key for key, _ in stored}):
        attacker.delete_object(Bucket=bucket, Key=key)
    assert visible(attacker, bucket) == set(), "the plain deletes hid every file"
    still, markers = versions(attacker, bucket)
    assert still == stored and len(markers) == len({key for key, _ in stored})

    for marker in markers:
        attacker.delete_object(Bucket=bucket, Key=marker["Key"], VersionId=marker["VersionId"])
    restored = workspace.opsctl("restore", "--yes", "--target", "offsite", "--to", "restored/bank.sqlite3")
    assert restored.returncode == 0, restored.output
    with closing(sqlite3.connect(workspace.root / "restored" / "bank.sqlite3")) as conn:
        assert conn.execute("SELECT count(*), sum(balance) FROM accounts").fetchone() == (ACCOUNTS, TOTAL)
    assert stored <= versions(attacker, bucket)[0]


def test_prune_on_the_locked_bucket_succeeds_and_says_when_storage_comes_back(workspace, s3_endpoint):
    offsite = locked_policy(workspace, s3_endpoint)
    bucket = offsite["bucket"]
    for command in ("init", "backup", "backup"):
        result = workspace.opsctl(command)
        assert result.returncode == 0, result.output
    client = s3_endpoint.client()
    before, _ = versions(client, bucket)
    keys = [key for key, _ in before]
    assert len(keys) == len(set(keys)), "replication wrote some file twice (a second version)"

    result = workspace.opsctl("--json", "prune", "--target", "offsite")
    assert result.returncode == 0, result.output
    row = json.loads(result.stdout)["targets"][0]
    assert row["ok"] and len(row["removed"]) == 1, row
    assert "delete markers" in row["note"] and "until each one's lock expires" in row["note"], row

    after, markers = versions(client, bucket)
    removed = f"crm/snapshots/{row['removed'][0]}"
    assert before <= after, "a locked version went away"
    assert removed not in visible(client, bucket) and removed in {m["Key"] for m in markers}
