"""S3 Object Lock without a server: the policy's check of lock days, what a bucket's lock is read as, what
init refuses, how uploads satisfy AWS, the IAM right to read a lock, and prune's note."""

from __future__ import annotations

import base64
import hashlib
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest
import yaml
from click.testing import CliRunner
from rich.console import Console

from opsctl.actions.iam_policy import S3Role, policy_document
from opsctl.actions.outcome import TargetResult
from opsctl.actions.prune import Pruned, PruneOutcome, lock_note, show_prune
from opsctl.cli import main
from opsctl.errors import BadInput
from opsctl.policy import load_policy
from opsctl.targets import target_for
from opsctl.targets.s3 import S3Files, S3Target

SECRET = "s3-secret-never-shown"
SNAPSHOT_ID = "ab" * 32


def write(tmp_path: Path, object_lock: dict | None, retention: dict | None = None) -> Path:
    """A policy with a local target and an S3 target carrying object_lock (and its own retention, if given)."""
    keys = tmp_path / "s3.env"
    keys.write_text(f"AWS_ACCESS_KEY_ID=BACKUPKEY\nAWS_SECRET_ACCESS_KEY={SECRET}\n")
    keys.chmod(0o600)
    (tmp_path / "repo.pass").write_text("s3cret-password\n")
    (tmp_path / "repo.pass").chmod(0o600)
    offsite = {"name": "offsite", "kind": "s3", "endpoint": "https://s3.eu-central-1.amazonaws.com",
               "bucket": "acme-crm", "prefix": "crm-prod", "credentials": {"file": "s3.env"},
               **({"object_lock": object_lock} if object_lock else {}),
               **({"retention": retention} if retention else {})}
    policy = {"name": "crm-prod", "database": {"engine": "sqlite", "path": "crm.sqlite3"},
              "targets": [{"name": "local", "kind": "local", "path": "repo"}, offsite],
              "repository_password": {"file": "repo.pass"}, "retention": {"keep_daily": 7, "keep_weekly": 4}}
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    return path


def s3_target(tmp_path: Path, object_lock: dict | None, client: Any) -> S3Target:
    target = target_for(load_policy(write(tmp_path, object_lock)).targets[1])
    assert isinstance(target, S3Target)
    target.__dict__["_client"] = client  # no boto3 client, no network: the fake answers
    return target


def refused(code: str, operation: str) -> botocore.exceptions.ClientError:
    return botocore.exceptions.ClientError({"Error": {"Code": code, "Message": f"key {SECRET} refused"}}, operation)


class Bucket:
    """A fake S3 client: an existing bucket with this Object Lock answer (or error), recording what is asked."""

    def __init__(self, lock: dict | Exception, exists: bool = True, until: datetime | None = None) -> None:
        self.lock, self.exists, self.until = lock, exists, until
        self.calls: list[tuple[str, dict]] = []

    def list_objects_v2(self, **kwargs: Any) -> dict:
        self.calls.append(("list_objects_v2", kwargs))
        if not self.exists:
            raise refused("NoSuchBucket", "ListObjectsV2")
        return {}

    def get_object_lock_configuration(self, **_: Any) -> dict:
        if isinstance(self.lock, Exception):
            raise self.lock
        return {"ObjectLockConfiguration": self.lock}

    def head_object(self, **kwargs: Any) -> dict:
        self.calls.append(("head_object", kwargs))
        return {"ObjectLockMode": "COMPLIANCE", "ObjectLockRetainUntilDate": self.until} if self.until else {}

    def __getattr__(self, name: str) -> Any:  # every other call (create_bucket, put_*) is recorded
        return lambda **kwargs: self.calls.append((name, kwargs)) or {}


def retention(mode: str, days: int) -> dict:
    return {"ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": mode, "Days": days}}}


NO_LOCK = refused("ObjectLockConfigurationNotFoundError", "GetObjectLockConfiguration")
WANTED = {"mode": "COMPLIANCE", "days": 30}


# --- the policy ------------------------------------------------------------------------------------


def test_a_lock_shorter_than_the_retention_is_refused_by_its_field(tmp_path):
    path = write(tmp_path, {"mode": "COMPLIANCE", "days": 3}, retention={"keep_daily": 7})
    result = CliRunner().invoke(main, ["--policy", str(path), "policy", "validate"])
    assert result.exit_code == 2, result.output
    assert "targets[1].object_lock.days 3 is shorter than" in result.stderr, result.stderr
    assert "Traceback" not in result.output


def test_a_lock_that_outlasts_the_retention_loads(tmp_path):
    config = load_policy(write(tmp_path, {"mode": "GOVERNANCE", "days": 8}, retention={"keep_daily": 7})).targets[1]
    assert config.object_lock is not None and (config.object_lock.mode, config.object_lock.days) == ("GOVERNANCE", 8)


# --- reading a bucket's lock -------------------------------------------------------------------------


def test_a_key_that_may_not_read_the_lock_is_unknown_not_an_error(tmp_path):
    target = s3_target(tmp_path, WANTED, Bucket(refused("AccessDenied", "GetObjectLockConfiguration")))
    state = target.immutability(SNAPSHOT_ID)
    assert not state.locked and state.detail == "not readable with this key (AccessDenied)"
    assert state.hint is not None and "s3:GetBucketObjectLockConfiguration" in state.hint
    assert SECRET not in f"{state}" and "BACKUPKEY" not in f"{state}"
    fact = target._object_lock_fact()
    assert not fact.ok, "the policy asks for a lock opsctl cannot see"


def test_a_weaker_lock_says_what_is_missing_and_the_command_that_fixes_it(tmp_path):
    target = s3_target(tmp_path, WANTED, Bucket(retention("GOVERNANCE", 10)))
    state = target.immutability(None)
    assert state.locked and (state.mode, state.days, state.until) == ("GOVERNANCE", 10, None)
    assert state.detail == "object lock GOVERNANCE, 10 days"
    assert state.hint is not None and "GOVERNANCE mode" in state.hint and "not COMPLIANCE" in state.hint
    assert ("aws s3api put-object-lock-configuration --bucket acme-crm --object-lock-configuration "
            """'{"ObjectLockEnabled":"Enabled","Rule":{"DefaultRetention":{"Mode":"COMPLIANCE","Days":30}}}'"""
            ) in state.hint
    fact = target._object_lock_fact()
    assert not fact.ok and fact.hint == state.hint


def test_fewer_days_are_named_and_a_stricter_longer_lock_is_enough(tmp_path):
    short = s3_target(tmp_path, WANTED, Bucket(retention("COMPLIANCE", 10))).immutability(None)
    assert short.hint is not None and "locks new files for 10 days, fewer than 30" in short.hint
    years = {"ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Years": 1}}}
    target = s3_target(tmp_path, {"mode": "GOVERNANCE", "days": 30}, Bucket(years))
    state = target.immutability(None)
    assert state.locked and state.days == 365 and state.hint is None
    assert target._object_lock_fact().ok


def test_no_lock_at_all_says_how_to_turn_it_on_on_aws_and_elsewhere(tmp_path):
    state = s3_target(tmp_path, WANTED, Bucket(NO_LOCK)).immutability(None)
    assert not state.locked and state.detail == "object lock off"
    assert state.hint is not None and "has no Object Lock" in state.hint
    assert "aws s3api put-bucket-versioning --bucket acme-crm --versioning-configuration Status=Enabled" in state.hint
    assert "only when a bucket is created" in state.hint and "opsctl init" in state.hint


def test_without_object_lock_in_the_policy_doctor_only_informs(tmp_path):
    fact = s3_target(tmp_path, None, Bucket(NO_LOCK))._object_lock_fact()
    assert fact.ok and fact.detail == "object lock off (no immutable copy: 3-2-1-1-0 needs one)"
    unreadable = s3_target(tmp_path, None, Bucket(refused("AccessDenied", "x")))._object_lock_fact()
    assert unreadable.ok and "AccessDenied" in unreadable.detail


def test_until_is_the_newest_snapshots_own_lock(tmp_path):
    until = datetime.now(UTC) + timedelta(days=30)
    client = Bucket(retention("COMPLIANCE", 30), until=until)
    target = s3_target(tmp_path, WANTED, client)
    assert target.immutability(SNAPSHOT_ID).until == until
    assert ("head_object", {"Bucket": "acme-crm", "Key": f"crm-prod/snapshots/{SNAPSHOT_ID}"}) in client.calls
    assert target.immutability("abababab").until is None, "a short ID names no file"


# --- init ------------------------------------------------------------------------------------------


def test_init_creates_a_missing_bucket_with_the_lock_and_its_default_retention(tmp_path):
    client = Bucket(NO_LOCK, exists=False)
    s3_target(tmp_path, WANTED, client).prepare_init()
    made = [(name, kwargs) for name, kwargs in client.calls if name != "list_objects_v2"]
    assert made == [("create_bucket", {"Bucket": "acme-crm", "ObjectLockEnabledForBucket": True}),
                    ("put_object_lock_configuration", {"Bucket": "acme-crm",
                                                       "ObjectLockConfiguration": retention("COMPLIANCE", 30)})]


def test_init_refuses_an_existing_bucket_that_keeps_less_and_writes_nothing(tmp_path):
    client = Bucket(retention("COMPLIANCE", 10))
    with pytest.raises(BadInput) as error:
        s3_target(tmp_path, WANTED, client).prepare_init()
    assert "asks for COMPLIANCE, 30 days, but the bucket acme-crm locks new files for 10 days" in error.value.message
    assert error.value.hint is not None and "put-object-lock-configuration" in error.value.hint
    assert [name for name, _ in client.calls] == ["list_objects_v2"]


def test_init_leaves_a_bucket_without_object_lock_in_the_policy_alone(tmp_path):
    client = Bucket(NO_LOCK)
    s3_target(tmp_path, None, client).prepare_init()
    assert [name for name, _ in client.calls] == ["list_objects_v2"]


# --- uploads, rights, prune ------------------------------------------------------------------------


def test_every_upload_carries_its_content_md5():
    """AWS refuses a PUT into a bucket with a default retention unless it carries Content-MD5 (or a checksum)."""
    client = Bucket(NO_LOCK)
    content = b"pack bytes"
    assert S3Files(client, "acme-crm", "crm-prod", "offsite").write_new("data/ab/" + "ab" * 32, content)
    (name, kwargs), = client.calls
    assert name == "put_object"
    assert kwargs["ContentMD5"] == base64.b64encode(hashlib.md5(content).digest()).decode()  # noqa: S324


def test_a_locked_target_lets_every_role_read_retention_but_never_bypass_it(tmp_path):
    locked = load_policy(write(tmp_path, WANTED))
    plain = load_policy(write(tmp_path, None))
    for role in S3Role:
        document = json.dumps(policy_document(locked.targets[1], role, locked))
        # The fleet role reads status documents alone: whether the repository's files are locked is not its business.
        assert ("s3:GetObjectRetention" in document) is (role is not S3Role.FLEET) and "Bypass" not in document
        assert "s3:GetObjectRetention" not in json.dumps(policy_document(plain.targets[1], role, plain))


class Screen:
    """Where show_prune writes, readable afterwards."""

    json_output = False

    def __init__(self) -> None:
        self.out = Console(file=io.StringIO(), width=400, highlight=False)
        self.err = self.out


def test_prune_on_a_locked_target_says_the_storage_comes_back_only_when_the_lock_ends(tmp_path):
    locked = load_policy(write(tmp_path, WANTED)).targets[1]
    note = lock_note(locked)
    assert note is not None and "delete markers" in note and "until each one's lock expires (30 days" in note
    assert lock_note(load_policy(write(tmp_path, None)).targets[1]) is None
    outcome = PruneOutcome((TargetResult("offsite", "offsite (s3 ...)", Pruned({"keep_daily": 7}, note=note)),),
                           dry_run=False)
    assert outcome.to_json()["targets"][0]["note"] == note
    screen = Screen()
    show_prune(screen, outcome)  # type: ignore[arg-type]  # show_prune only writes to .out
    assert f"note: {note}" in screen.out.file.getvalue()
