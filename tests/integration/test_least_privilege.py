"""Threat 4, least privilege: the host that backs up cannot destroy backups.

moto_server checks every request against IAM here (MotoServer(enforce_iam=True)): the keys of each
role carry exactly the policy `opsctl iam-policy` prints. What moto does not enforce is said where it
matters: it ignores the s3:prefix condition of ListBucket (only StringEquals conditions are checked),
and it authorises HeadBucket as "s3:HeadBucket" where AWS asks for s3:ListBucket.
"""

from __future__ import annotations

import json

import botocore.exceptions
import pytest

from tests.conftest import require
from tests.support.bank import make_bank
from tests.support.moto import MotoServer, moto_server_binary
from tests.support.targets import local_target, s3_target
from tests.support.workspace import Workspace


@pytest.fixture(scope="module")
def iam_moto() -> MotoServer:
    binary = moto_server_binary()
    require(binary is not None, "moto_server (pip install 'moto[server]')")
    server = MotoServer(binary, enforce_iam=True).start()
    yield server
    server.cleanup()


def keys_file(ws: Workspace, name: str, keys: dict[str, str]) -> None:
    ws.secret(name, "\n".join(f"{k}={v}" for k, v in keys.items()))


def printed_policy(ws: Workspace, role: str) -> dict:
    result = ws.opsctl("--json", "iam-policy", "--target", "offsite", "--role", role)
    assert result.returncode == 0, result.output
    return json.loads(result.stdout)["policy"]


def write(ws: Workspace, offsite: dict, prune_keys: bool) -> None:
    entry = {**offsite, "prune_credentials": {"file": "prune.env"}} if prune_keys else offsite
    ws.write_policy({"engine": "sqlite", "path": "bank.sqlite3"}, [local_target(), entry])


@pytest.fixture
def split(workspace, iam_moto) -> tuple[Workspace, dict, dict[str, dict[str, str]]]:
    """A local primary and an S3 replica whose keys cannot delete; prune keys made from the printed policies."""
    make_bank(workspace.root / "bank.sqlite3")
    offsite = s3_target(iam_moto, workspace, retention={"keep_last": 1})
    iam_moto.create_bucket(offsite["bucket"])
    write(workspace, offsite, prune_keys=False)
    keys = {role: iam_moto.iam_user(f"{role}-{offsite['bucket']}", printed_policy(workspace, role))
            for role in ("backup", "prune", "audit")}
    keys_file(workspace, "s3.env", keys["backup"])
    keys_file(workspace, "prune.env", keys["prune"])
    return workspace, offsite, keys


def objects(moto: MotoServer, bucket: str, folder: str) -> list[str]:
    return [o["Key"] for o in moto.client().list_objects_v2(Bucket=bucket, Prefix=f"crm/{folder}/").get("Contents", [])]


def test_keys_that_cannot_delete_back_up_replicate_verify_and_restore_but_not_prune(split, iam_moto):
    ws, offsite, keys = split
    for command in (("init",), ("backup",), ("backup",), ("verify", "--target", "offsite"),
                    ("restore", "--yes", "--target", "offsite", "--to", "restored.sqlite3")):
        result = ws.opsctl(*command)
        assert result.returncode == 0, (command, result.output)
    assert (ws.root / "restored.sqlite3").is_file()
    assert len(objects(iam_moto, offsite["bucket"], "snapshots")) == 2
    assert objects(iam_moto, offsite["bucket"], "locks") == []  # restic removed its own locks with these keys

    # The backup keys cannot delete a pack, nor can prune forget a snapshot with them.
    pack = objects(iam_moto, offsite["bucket"], "data")[0]
    with pytest.raises(botocore.exceptions.ClientError, match="AccessDenied"):
        iam_moto.client(keys["backup"]).delete_object(Bucket=offsite["bucket"], Key=pack)
    refused = ws.opsctl("--json", "prune")
    assert refused.returncode == 3, refused.output
    rows = {row["target"]: row for row in json.loads(refused.stdout)["targets"]}
    assert rows["local"]["ok"] and not rows["offsite"]["ok"], rows
    assert len(objects(iam_moto, offsite["bucket"], "snapshots")) == 2
    assert pack in objects(iam_moto, offsite["bucket"], "data")

    # With the prune role's keys as prune_credentials, prune works (and only prune uses them).
    write(ws, offsite, prune_keys=True)
    pruned = ws.opsctl("--json", "prune")
    assert pruned.returncode == 0, pruned.output
    assert len(objects(iam_moto, offsite["bucket"], "snapshots")) == 1
    assert ws.opsctl("backup").returncode == 0


def test_audit_keys_read_the_audit_trail_copy_and_nothing_of_the_repository(split, iam_moto):
    """The auditor checks the trail's off-site copy; the repository (its keys, its data) is not theirs to read."""
    ws, offsite, keys = split
    assert ws.opsctl("init").returncode == 0 and ws.opsctl("backup").returncode == 0
    bucket, copy = offsite["bucket"], "crm/opsctl-audit/0123456789abcdef/0000000001-0000000002.jsonl"
    iam_moto.client(keys["backup"]).put_object(Bucket=bucket, Key=copy, Body=b"{}\n")  # as the copy job adds one
    audit = iam_moto.client(keys["audit"])
    assert audit.get_object(Bucket=bucket, Key=copy)["Body"].read() == b"{}\n"
    listed = audit.list_objects_v2(Bucket=bucket, Prefix="crm/opsctl-audit/").get("Contents", [])
    assert copy in [o["Key"] for o in listed]
    assert audit.get_bucket_versioning(Bucket=bucket) is not None  # the bucket's settings, for the audit
    for secret in ("crm/config", objects(iam_moto, bucket, "keys")[0], objects(iam_moto, bucket, "data")[0]):
        with pytest.raises(botocore.exceptions.ClientError, match="AccessDenied"):
            audit.get_object(Bucket=bucket, Key=secret)
    with pytest.raises(botocore.exceptions.ClientError, match="AccessDenied"):
        audit.put_object(Bucket=bucket, Key="crm/opsctl-audit/planted.jsonl", Body=b"x")
    with pytest.raises(botocore.exceptions.ClientError, match="AccessDenied"):
        audit.delete_object(Bucket=bucket, Key=copy)
    stranger = iam_moto.client({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"})
    with pytest.raises(botocore.exceptions.ClientError, match="InvalidAccessKeyId"):  # moto really checks keys
        stranger.list_objects_v2(Bucket=offsite["bucket"])
