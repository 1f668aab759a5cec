"""Least privilege and transport settings of S3 and SFTP targets, without servers: the printed IAM
policies, the policy checks (plain HTTP, ca_file), which keys a command gets, and restic's ssh command."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from opsctl.cli import main
from opsctl.policy import load_policy
from opsctl.targets import Access, target_for

ENDPOINT = "https://s3.eu-central-1.amazonaws.com"


def s3_entry(**extra) -> dict:
    return {"name": "offsite", "kind": "s3", "endpoint": ENDPOINT, "bucket": "acme-crm", "prefix": "crm-prod",
            "credentials": {"file": "s3.env"}, **extra}


def write(tmp_path, *targets: dict, **extra):
    for name, key in (("s3.env", "BACKUPKEY"), ("prune.env", "PRUNEKEY")):
        path = tmp_path / name
        path.write_text(f"AWS_ACCESS_KEY_ID={key}\nAWS_SECRET_ACCESS_KEY={key.lower()}-secret\n")
        path.chmod(0o600)
    (tmp_path / "repo.pass").write_text("s3cret-password\n")
    (tmp_path / "repo.pass").chmod(0o600)
    policy = {"name": "crm-prod", "database": {"engine": "sqlite", "path": "crm.sqlite3"},
              "targets": [{"name": "local", "kind": "local", "path": "repo"}, *targets],
              "repository_password": {"file": "repo.pass"}, **extra}
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    return path


def opsctl(path, *args: str):
    return CliRunner().invoke(main, ["--policy", str(path), *args])


def statements(document: dict) -> dict[str, dict]:
    return {s["Sid"]: s for s in document["Statement"]}


def actions(document: dict) -> set[str]:
    return {a for s in document["Statement"] for a in s["Action"]}


def iam(tmp_path, role: str, fleet: dict | None = None, **extra) -> dict:
    path = write(tmp_path, s3_entry(**extra), **({"fleet": fleet} if fleet else {}))
    result = opsctl(path, "--json", "iam-policy", "--target", "offsite", "--role", role)
    assert result.exit_code == 0, result.output
    envelope = json.loads(result.stdout)
    assert envelope["command"] == "iam-policy" and envelope["outcome"] == "ok" and envelope["role"] == role
    return envelope["policy"]


def test_backup_role_deletes_only_locks_and_lists_only_its_prefix(tmp_path):
    document = iam(tmp_path, "backup")
    by_sid = statements(document)
    assert by_sid["DeleteLocksOnly"]["Resource"] == "arn:aws:s3:::acme-crm/crm-prod/locks/*"
    assert by_sid["AddFiles"]["Resource"] == by_sid["ReadRepository"]["Resource"] == "arn:aws:s3:::acme-crm/crm-prod/*"
    assert by_sid["ListRepository"]["Condition"] == {"StringLike": {"s3:prefix": ["crm-prod/*"]}}
    deleting = [s for s in document["Statement"] if "s3:DeleteObject" in s["Action"]]
    assert [s["Resource"] for s in deleting] == ["arn:aws:s3:::acme-crm/crm-prod/locks/*"]
    assert not any(a.startswith("s3:Delete") and a != "s3:DeleteObject" for a in actions(document))
    assert all(s["Effect"] == "Allow" for s in document["Statement"]) and document["Version"] == "2012-10-17"


def test_prune_role_may_delete_under_the_prefix_only(tmp_path):
    by_sid = statements(iam(tmp_path, "prune"))
    assert by_sid["DeleteFiles"]["Resource"] == "arn:aws:s3:::acme-crm/crm-prod/*"
    assert "Condition" not in by_sid["ListRepository"]  # restic init asks whether the bucket exists


def test_audit_role_reads_the_audit_trail_copy_and_nothing_of_the_repository(tmp_path):
    document = iam(tmp_path, "audit")
    assert actions(document) == {"s3:ListBucket", "s3:ListBucketVersions", "s3:GetObject", "s3:GetObjectVersion",
                                 "s3:GetBucketVersioning", "s3:GetBucketObjectLockConfiguration"}
    by_sid = statements(document)
    assert by_sid["ReadAuditCopy"]["Resource"] == "arn:aws:s3:::acme-crm/crm-prod/opsctl-audit/*"
    assert by_sid["ListAuditCopy"]["Condition"] == {"StringLike": {"s3:prefix": ["crm-prod/opsctl-audit/*"]}}
    reading = [s["Resource"] for s in document["Statement"] if "s3:GetObject" in s["Action"]]
    assert reading == ["arn:aws:s3:::acme-crm/crm-prod/opsctl-audit/*"]  # not data/, keys/, index/ or config


def test_audit_role_without_prefix_and_with_object_lock(tmp_path):
    document = iam(tmp_path, "audit", prefix="", object_lock={"mode": "GOVERNANCE", "days": 30})
    by_sid = statements(document)
    assert by_sid["ReadAuditCopy"]["Resource"] == by_sid["ReadRetention"]["Resource"] == (
        "arn:aws:s3:::acme-crm/opsctl-audit/*")  # whether the copies are locked, not the repository's files
    assert by_sid["ListAuditCopy"]["Condition"] == {"StringLike": {"s3:prefix": ["opsctl-audit/*"]}}
    assert not any(a.startswith(("s3:Put", "s3:Delete", "s3:Bypass")) for a in actions(document))


def test_fleet_role_lists_and_reads_the_fleet_folder_and_nothing_else(tmp_path):
    """The fleet folder is beside the repository (the prefix's parent): crm/eu -> crm/fleet."""
    document = iam(tmp_path, "fleet", prefix="crm/eu", object_lock={"mode": "GOVERNANCE", "days": 30})
    assert actions(document) == {"s3:ListBucket", "s3:GetObject"}
    by_sid = statements(document)
    assert by_sid["ListFleet"]["Resource"] == "arn:aws:s3:::acme-crm"
    assert by_sid["ListFleet"]["Condition"] == {"StringLike": {"s3:prefix": ["crm/fleet/*"]}}
    assert by_sid["ReadFleet"]["Resource"] == "arn:aws:s3:::acme-crm/crm/fleet/*"
    assert set(by_sid) == {"ListFleet", "ReadFleet"}


@pytest.mark.parametrize(("prefix", "folder"), [("crm-prod", "fleet"), ("", "fleet"), ("/a/b/c/", "a/b/fleet")])
def test_fleet_role_at_the_bucket_root_or_deeper(tmp_path, prefix, folder):
    by_sid = statements(iam(tmp_path, "fleet", prefix=prefix))
    assert by_sid["ReadFleet"]["Resource"] == f"arn:aws:s3:::acme-crm/{folder}/*"
    assert by_sid["ListFleet"]["Condition"] == {"StringLike": {"s3:prefix": [f"{folder}/*"]}}


@pytest.mark.parametrize("role", ["backup", "prune"])
def test_a_publishing_policy_may_put_its_own_fleet_documents_and_no_others(tmp_path, role):
    document = iam(tmp_path, role, fleet={"publish_to": ["offsite"], "host": "crm-eu-1"}, prefix="crm/eu")
    assert statements(document)["PublishFleetStatus"] == {
        "Sid": "PublishFleetStatus", "Effect": "Allow", "Action": ["s3:PutObject"],
        "Resource": "arn:aws:s3:::acme-crm/crm/fleet/crm-prod/crm-eu-1.json"}  # this host's document, and only it
    assert "PublishFleetStatus" not in statements(iam(tmp_path, role, prefix="crm/eu"))  # it publishes nothing
    # Without a prefix the fleet folder lies under the repository's own bucket/*: nothing to add.
    unprefixed = iam(tmp_path, role, fleet={"publish_to": ["offsite"], "host": "h"}, prefix="")
    assert "PublishFleetStatus" not in statements(unprefixed)
    # Publishing to another target gives these keys nothing.
    assert "PublishFleetStatus" not in statements(iam(tmp_path, role, fleet={"publish_to": ["local"], "host": "h"}))


def test_publishing_to_s3_needs_the_host_s_name_in_the_policy(tmp_path):
    """The IAM policy names the one document a host's keys may put: a host name taken from the machine at run time
    could differ from the one the keys were made for."""
    path = write(tmp_path, s3_entry(prefix="crm/eu"), fleet={"publish_to": ["offsite"]})
    result = opsctl(path, "policy", "validate")
    assert result.exit_code == 2, result.output
    assert "At 'fleet.host': target 'offsite' is S3, where a host's keys may write its own status document only" \
        in result.stderr and "set fleet.host to the name this host is listed under" in result.stderr
    assert opsctl(path, "iam-policy", "--target", "offsite").exit_code == 2
    # Another kind of target needs no name in the policy (the machine's is taken).
    assert opsctl(write(tmp_path, s3_entry(prefix="crm/eu"), fleet={"publish_to": ["local"]}), "policy",
                  "validate").exit_code == 0


@pytest.mark.parametrize("prefix", ["crm/fleet", "fleet", "/crm/fleet/"])
def test_a_repository_that_is_a_fleet_folder_is_refused(tmp_path, prefix):
    """Its fleet folder would be the repository itself: the fleet role could read its keys/."""
    path = write(tmp_path, s3_entry(prefix=prefix))
    result = opsctl(path, "iam-policy", "--target", "offsite", "--role", "fleet")
    assert result.exit_code == 2, result.output
    assert f"the repository of target 'offsite' ({prefix}) lies in a folder named fleet" in result.stderr
    assert "move the repository to a folder with another name" in result.stderr
    published = write(tmp_path, s3_entry(prefix=prefix), fleet={"publish_to": ["offsite"], "host": "h"})
    refused = opsctl(published, "policy", "validate")
    assert refused.exit_code == 2 and "At 'fleet.publish_to[0]': the repository of target 'offsite'" in refused.stderr
    assert opsctl(write(tmp_path, s3_entry(prefix="crm/fleets")), "iam-policy", "--target", "offsite", "--role",
                  "fleet").exit_code == 0


def test_a_target_without_prefix_gets_the_whole_bucket(tmp_path):
    by_sid = statements(iam(tmp_path, "backup", prefix=""))
    assert by_sid["DeleteLocksOnly"]["Resource"] == "arn:aws:s3:::acme-crm/locks/*"
    assert "Condition" not in by_sid["ListRepository"]


def test_text_output_is_the_bare_document(tmp_path):
    result = opsctl(write(tmp_path, s3_entry()), "iam-policy", "--target", "offsite")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == iam(tmp_path, "backup")


def test_a_non_s3_target_is_refused_by_name(tmp_path):
    result = opsctl(write(tmp_path, s3_entry()), "--json", "iam-policy", "--target", "local")
    assert result.exit_code == 2, result.output
    envelope = json.loads(result.stdout)
    assert envelope["outcome"] == "refused" and "target 'local'" in envelope["error"] and envelope["hint"]


def test_an_unknown_role_is_refused(tmp_path):
    assert opsctl(write(tmp_path, s3_entry()), "iam-policy", "--target", "offsite", "--role", "root").exit_code == 2


def test_plain_http_endpoint_is_refused_unless_allowed(tmp_path):
    result = opsctl(write(tmp_path, s3_entry(endpoint="http://127.0.0.1:9000")), "policy", "validate")
    assert result.exit_code == 2, result.output
    assert "At 'targets[1].endpoint'" in result.stderr and "allow_plain_http: true" in result.stderr
    allowed = write(tmp_path, s3_entry(endpoint="http://127.0.0.1:9000", allow_plain_http=True))
    assert opsctl(allowed, "policy", "validate").exit_code == 0


def test_ca_file_must_exist_and_be_trusted(tmp_path):
    result = opsctl(write(tmp_path, s3_entry(ca_file="ca.pem")), "policy", "validate")
    assert result.exit_code == 2 and "At 'targets[1].ca_file'" in result.stderr, result.output
    ca = tmp_path / "ca.pem"
    bundle, end = Path("/etc/ssl/certs/ca-certificates.crt").read_text(), "-----END CERTIFICATE-----\n"
    ca.write_text(bundle[:bundle.index(end) + len(end)])  # a real certificate: the first of the system's
    ca.chmod(0o666)  # anyone could swap in their own CA
    result = opsctl(write(tmp_path, s3_entry(ca_file="ca.pem")), "policy", "validate")
    assert result.exit_code == 2 and "At 'targets[1].ca_file'" in result.stderr and "chmod" in result.stderr
    ca.chmod(0o644)
    path = write(tmp_path, s3_entry(ca_file="ca.pem"))
    assert opsctl(path, "policy", "validate").exit_code == 0
    target = target_for(load_policy(path).targets[1])
    assert target.repository(b"pw").cacert == str(ca)
    assert target._client.meta.endpoint_url == ENDPOINT and target._client._endpoint.http_session._verify == str(ca)


@pytest.mark.parametrize(("access", "key"), [(Access.WRITE, "BACKUPKEY"), (Access.DELETE, "PRUNEKEY")])
def test_only_a_deleting_command_gets_the_prune_credentials(tmp_path, access, key):
    config = load_policy(write(tmp_path, s3_entry(prune_credentials={"file": "prune.env"}))).targets[1]
    repository = target_for(config, access=access).repository(b"pw")
    files = dict(repository.secret_files)
    assert f"aws_access_key_id = {key}" in files["AWS_SHARED_CREDENTIALS_FILE"].decode()


def test_without_prune_credentials_a_deleting_command_uses_credentials(tmp_path):
    config = load_policy(write(tmp_path, s3_entry())).targets[1]
    files = dict(target_for(config, access=Access.DELETE).repository(b"pw").secret_files)
    assert "BACKUPKEY" in files["AWS_SHARED_CREDENTIALS_FILE"].decode()


def test_prune_and_key_rotation_declare_that_they_delete():
    from opsctl.actions import backup, check, keys, prune, restore, verify

    assert prune.PRUNE.access is Access.DELETE and keys.KEYS_ROTATE.access is Access.DELETE
    assert all(c.access is Access.WRITE for c in (backup.BACKUP, verify.VERIFY, restore.RESTORE, check.CHECK))


def test_restic_gets_the_ca_file_as_cacert(tmp_path):
    from opsctl.restic import Repository, Restic

    seen = tmp_path / "argv"
    fake = tmp_path / "restic"
    fake.write_text(f'#!/bin/sh\n[ "$1" = version ] && echo "restic 0.14.0" && exit 0\necho "$@" > {seen}\n')
    fake.chmod(0o700)
    Restic(str(fake)).init(Repository("s3:https://x/b", "x", b"pw", cacert="/etc/ca.pem"))
    assert "--cacert /etc/ca.pem" in seen.read_text()


def test_restics_ssh_reads_no_ssh_config_and_pins_everything(tmp_path):
    key, known = tmp_path / "id", tmp_path / "known_hosts"
    config = load_policy(write(tmp_path, {"name": "nas", "kind": "sftp", "host": "nas.example", "user": "backup",
                                          "path": "/backups", "identity_file": str(key),
                                          "known_hosts": str(known)})).targets[1]
    argv = target_for(config).ssh_command()
    assert argv[:3] == ["ssh", "-F", "/dev/null"]
    options = {argv[i + 1] for i, word in enumerate(argv) if word == "-o"}
    assert {f"UserKnownHostsFile={known}", "GlobalKnownHostsFile=/dev/null", "StrictHostKeyChecking=yes",
            "KnownHostsCommand=none", "ProxyCommand=none", "ProxyJump=none", "IdentityAgent=none",
            "ControlPath=none", "IdentitiesOnly=yes", "BatchMode=yes", "UpdateHostKeys=no"} <= options
    # OpenSSH itself accepts every option (`ssh -G` prints the resulting configuration without connecting).
    shown = subprocess.run([*argv[:-3], "-G", argv[-3]], capture_output=True, text=True, timeout=30, check=False)
    assert shown.returncode == 0, shown.stderr
    assert "identityagent none" in shown.stdout and "proxycommand" not in shown.stdout


def test_keys_restics_s3_library_would_prefer_never_reach_it(tmp_path, monkeypatch):
    """minio-go reads MinIO's and AWS's older variables before the credentials file: they would replace the
    policy's keys (and the least-privilege split) without a word."""
    from opsctl.restic import Restic

    for name in ("MINIO_ROOT_USER", "MINIO_ACCESS_KEY", "AWS_ACCESS_KEY", "AWS_SECRET_KEY", "AWS_ROLE_ARN"):
        monkeypatch.setenv(name, "ADMINKEY")
    repository = target_for(load_policy(write(tmp_path, s3_entry())).targets[1]).repository(b"pw")
    environment = Restic._environment(repository, {"AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "keys")})
    assert "ADMINKEY" not in environment.values()


@pytest.mark.parametrize(("prune_credentials", "ok"), [(True, False), (False, True)])
def test_doctor_requires_versioning_once_the_keys_are_split(tmp_path, prune_credentials, ok):
    """Keys that cannot delete can still overwrite: only bucket versioning keeps what they overwrote."""
    extra = {"prune_credentials": {"file": "prune.env"}} if prune_credentials else {}
    target = target_for(load_policy(write(tmp_path, s3_entry(**extra))).targets[1])

    class Unversioned:
        def get_bucket_versioning(self, **_: object) -> dict[str, str]:
            return {}

    target.__dict__["_client"] = Unversioned()
    fact = target._versioning_fact()
    assert fact.ok is ok and "versioning disabled" in fact.detail


def test_a_key_that_may_not_delete_is_named_with_what_to_do():
    from opsctl.restic.errors import classify

    said = "unable to remove pack: client.RemoveObject: Access Denied."
    error = classify(said, "offsite (s3 https://s3.example/b/crm)", "forget")
    assert "offsite (s3 https://s3.example/b/crm) refused this key" in error.message
    assert error.hint is not None and "prune_credentials" in error.hint
