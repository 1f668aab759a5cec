"""The audit trail's copy on real SFTP and S3 targets catches a local trail that was rewritten or cut short."""

from __future__ import annotations

import json

import pytest
import yaml

from opsctl.audit import chain
from opsctl.audit.trail import line_sha256
from tests.support.bank import make_bank
from tests.support.targets import local_target, s3_target, sftp_target


@pytest.fixture
def guarded(workspace, sftp_endpoint, s3_endpoint):
    """A SQLite CRM on local + SFTP + S3, initialised and backed up twice: the trail is on every target."""
    make_bank(workspace.root / "bank.sqlite3")
    workspace.write_policy({"engine": "sqlite", "path": "bank.sqlite3"},
                           [local_target(), sftp_target(sftp_endpoint), s3_target(s3_endpoint, workspace)])
    for command in ("init", "backup", "backup"):
        result = workspace.opsctl(command)
        assert result.returncode == 0, result.output
    return workspace


def rechain(trail, change) -> None:
    """What someone with write access to the state folder does: change lines, then recompute every hash and the head,
    so the local chain alone looks intact."""
    lines = [json.loads(line) for line in trail.read_text().splitlines()]
    lines = change(lines)
    raws: list[bytes] = []
    for seq, line in enumerate(lines):
        line["seq"] = seq
        line["prev"] = line_sha256(raws[-1]) if raws else "0" * 64
        raws.append(json.dumps(line, sort_keys=True).encode())
    trail.write_bytes(b"".join(raw + b"\n" for raw in raws))
    head = json.loads(chain.head_path(trail).read_text())
    chain.head_path(trail).write_text(json.dumps({**head, "seq": len(raws) - 1, "sha256": line_sha256(raws[-1])}))


def hide_the_second_backup(lines):
    """Pretend the second backup failed: the kind of edit someone covering a mistake makes."""
    backups = [line for line in lines if line.get("command") == "backup"]
    backups[1]["outcome"], backups[1]["exit_code"] = "failed", 1
    return lines


def test_a_rewritten_local_trail_looks_intact_alone_and_diverges_from_every_target(guarded):
    trail = guarded.root / "state" / "audit.jsonl"
    rechain(trail, hide_the_second_backup)

    alone = guarded.opsctl("audit", "verify")
    assert alone.returncode == 0, alone.output  # the local chain cannot tell: it was rebuilt whole
    for target in ("nas", "offsite"):
        against = guarded.opsctl("audit", "verify", "--against", target)
        assert against.returncode == 1, against.output
        assert "DIVERGES: entry 3 differs from the copy on" in against.stdout, against.output
        assert "the local trail was rewritten from there" in against.stdout


def test_a_trail_cut_short_diverges_and_an_honest_one_agrees(guarded):
    for target in ("nas", "offsite"):
        honest = guarded.opsctl("--json", "audit", "verify", "--against", target)
        assert honest.returncode == 0, honest.output
        assert json.loads(honest.stdout)["against"]["agrees"] is True

    trail = guarded.root / "state" / "audit.jsonl"
    rechain(trail, lambda lines: lines[:-4])
    cut = guarded.opsctl("audit", "verify", "--against", "offsite")
    assert cut.returncode == 1, cut.output
    assert "that the local trail lacks: it was cut short or replaced" in cut.stdout


def test_the_copy_holds_hashes_and_metadata_only_and_is_never_replaced(guarded):
    copies = sorted((guarded.root / "repo-local" / "opsctl-audit").rglob("*.jsonl"))
    assert len(copies) >= 3  # one file per job: init, backup, backup
    text = "".join(path.read_text() for path in copies)
    assert guarded.repository_password not in text
    for private in ("bank.sqlite3", str(guarded.root), '"user"', '"host"', '"error"'):
        assert private not in text
    before = {path: path.read_bytes() for path in copies}
    assert guarded.opsctl("backup").returncode == 0
    assert all(path.read_bytes() == content for path, content in before.items())


def test_a_file_planted_among_the_copies_is_reported_and_never_stops_the_copies(guarded):
    folder = next((guarded.root / "repo-local" / "opsctl-audit").iterdir())
    chain_id = json.loads(next(folder.iterdir()).read_text().splitlines()[0])["chain"]
    # A name that claims every entry to come, holding none: the copies must go on past it.
    (folder / "0000000000-9999999999.jsonl").write_text(json.dumps(
        {"format": "opsctl-audit-copy/1", "chain": chain_id, "first": 0, "last": 9999999999}) + "\n")
    assert guarded.opsctl("backup").returncode == 0
    result = guarded.opsctl("audit", "verify", "--against", "local")
    assert result.returncode == 1, result.output
    assert "holds a damaged copy of the trail" in result.stdout
    assert "0000000000-9999999999.jsonl" in result.stdout
    (folder / "0000000000-9999999999.jsonl").unlink()
    honest = guarded.opsctl("audit", "verify", "--against", "local")
    assert honest.returncode == 0, honest.output  # the backup after the planting was copied all the same


def test_a_trail_started_over_diverges_from_the_copies_of_the_one_it_replaced(guarded):
    state = guarded.root / "state"
    (state / "audit.jsonl").unlink()
    chain.head_path(state / "audit.jsonl").unlink()
    assert guarded.opsctl("backup").returncode == 0  # the new chain is copied too: that must not hide the old one
    result = guarded.opsctl("audit", "verify", "--against", "offsite")
    assert result.returncode == 1, result.output
    assert "also holds the copy of another chain" in result.stdout


def test_a_copy_written_again_on_the_bucket_is_caught_by_its_first_version(guarded, s3_endpoint):
    """The backup keys may PUT an audit key again (on a bucket with Object Lock too): the first version is evidence."""
    policy = yaml.safe_load((guarded.root / "policy.yaml").read_text())
    bucket = next(t["bucket"] for t in policy["targets"] if t["name"] == "offsite")
    client = s3_endpoint.client()
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    key = min(o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix="crm/opsctl-audit/")["Contents"])
    honest = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    client.put_object(Bucket=bucket, Key=key, Body=honest)  # the same bytes again (a retried PUT): no harm
    assert guarded.opsctl("audit", "verify", "--against", "offsite").returncode == 0
    client.put_object(Bucket=bucket, Key=key, Body=honest.replace(b'"outcome": "ok"', b'"outcome": "failed"', 1))
    result = guarded.opsctl("audit", "verify", "--against", "offsite")
    assert result.returncode == 1, result.output
    assert "3 versions (it was written again after opsctl wrote it)" in result.stdout


def test_another_policy_sharing_the_repository_keeps_its_own_chain_there(guarded):
    policy = yaml.safe_load((guarded.root / "policy.yaml").read_text())
    (guarded.root / "other.yaml").write_text(yaml.safe_dump({**policy, "name": "crm-other", "state_dir": "other"}))
    assert guarded.opsctl("backup", policy="other.yaml").returncode == 0
    for name in ("policy.yaml", "other.yaml"):
        result = guarded.opsctl("audit", "verify", "--against", "offsite", policy=name)
        assert result.returncode == 0, result.output
        assert "AGREES" in result.stdout
