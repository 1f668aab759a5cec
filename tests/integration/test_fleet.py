"""The fleet view against real servers: three hosts (three policies on this machine) publish their status beside
repositories that sit side by side in one bucket (moto, checking every request against IAM), on one SFTP server
and in a local folder; `opsctl fleet status` reads them with keys that may read nothing else.

crm-eu-1 (SQLite) and crm-us-1 (SQLite) are protected as their policies require; crm-ap-1 (PostgreSQL) requires a
drill it never ran, so it fails. Each test leaves the folders as it found them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import botocore.exceptions
import pytest
import yaml
from click.testing import CliRunner

from opsctl.actions.checkpoints import Checkpoints
from opsctl.actions.fleet_publish import FleetPublish
from opsctl.cli import main
from opsctl.policy.model import SftpTargetConfig
from opsctl.targets import target_for
from opsctl.targets.fleet import RefusedDocument
from tests.conftest import PG_ROLE, PG_ROLE_PASSWORD, require
from tests.support.bank import make_bank
from tests.support.browser import render
from tests.support.moto import MotoServer, moto_server_binary
from tests.support.sshd import SshServer, freeze
from tests.support.targets import local_target, s3_target, sftp_target
from tests.support.workspace import Result, Workspace

ONE_MIB = 1 << 20


@pytest.fixture(scope="module")
def iam_moto() -> Iterator[MotoServer]:
    binary = moto_server_binary()
    require(binary is not None, "moto_server (pip install 'moto[server]')")
    server = MotoServer(binary, enforce_iam=True).start()
    yield server
    server.cleanup()


@dataclass(frozen=True)
class Host:
    ws: Workspace
    policy: str
    name: str
    keys: dict[str, str]  # its backup keys, as `opsctl iam-policy --role backup` allows them

    @property
    def key(self) -> str:
        return f"crm/fleet/{self.policy}/{self.name}.json"


@dataclass(frozen=True)
class Fleet:
    moto: MotoServer
    bucket: str
    sshd: SshServer
    shared: Path  # the NAS folder holding crm-eu's and crm-us's SFTP repositories side by side
    hosts: dict[str, Host]
    auditor: Workspace
    fleet_keys: dict[str, str]

    def status(self, *args: str, ws: Workspace | None = None, target: str = "offsite") -> Result:
        return (ws or self.auditor).opsctl("--json", "fleet", "status", "--target", target, *args)

    def s3(self, keys: dict[str, str] | None = None):
        return self.moto.client(keys)

    def fleet_objects(self) -> dict[str, bytes]:
        listed = self.s3().list_objects_v2(Bucket=self.bucket, Prefix="crm/fleet/").get("Contents", [])
        return {o["Key"]: self.s3().get_object(Bucket=self.bucket, Key=o["Key"])["Body"].read() for o in listed}


def keys_file(ws: Workspace, name: str, keys: dict[str, str]) -> None:
    ws.secret(name, "\n".join(f"{k}={v}" for k, v in keys.items()))


def rename_policy(ws: Workspace, policy: str) -> None:
    """Workspace.write_policy names every policy crm-test: each host here has its own policy."""
    path = ws.root / "policy.yaml"
    path.write_text(yaml.safe_dump({**yaml.safe_load(path.read_text()), "name": policy}, sort_keys=False))


def printed_policy(ws: Workspace, role: str) -> dict:
    result = ws.opsctl("--json", "iam-policy", "--target", "offsite", "--role", role)
    assert result.returncode == 0, result.output
    return json.loads(result.stdout)["policy"]


def ok(result: Result) -> Result:
    assert result.returncode == 0, result.output
    return result


def make_host(ws: Workspace, moto: MotoServer, bucket: str, *, policy: str, database: dict, more: list[dict],
              publish_to: list[str], **extra) -> Host:
    """A host of the fleet: local + S3 (crm/<region>) + more targets, backed up and verified everywhere with the keys
    its printed backup role allows."""
    name = f"{policy}-1"
    offsite = s3_target(moto, ws, bucket=bucket, prefix=f"crm/{policy.removeprefix('crm-')}")
    ws.write_policy(database, [local_target(), offsite, *more], fleet={"publish_to": publish_to, "host": name},
                    **extra)
    rename_policy(ws, policy)
    keys = moto.iam_user(f"backup-{policy}", printed_policy(ws, "backup"))
    keys_file(ws, "s3.env", keys)
    for command in (["init"], ["backup"], ["verify", "--all-targets"]):
        ok(ws.opsctl(*command))
    return Host(ws, policy, name, keys)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, restic_binary, iam_moto, ssh_server, pg_server) -> Fleet:  # noqa: ARG001 (restic)
    ssh_server.reset()
    bucket = iam_moto.create_bucket(f"crm-fleet-{uuid.uuid4().hex[:8]}")
    shared = ssh_server.root / f"shared-{uuid.uuid4().hex[:8]}"
    shared.mkdir()
    hosts = {}
    for policy in ("crm-eu", "crm-us"):
        ws = Workspace(tmp_path_factory.mktemp(policy))
        make_bank(ws.root / "bank.sqlite3")
        nas = sftp_target(ssh_server, "nas", path=str(shared / policy.removeprefix("crm-")))
        publish_to = ["offsite", "nas"] if policy == "crm-eu" else ["offsite", "local", "nas"]
        hosts[policy] = make_host(ws, iam_moto, bucket, policy=policy, database={"engine": "sqlite",
                                  "path": "bank.sqlite3"}, more=[nas], publish_to=publish_to)
    hosts["crm-ap"] = _postgres_host(tmp_path_factory, iam_moto, bucket, pg_server)
    auditor = Workspace(tmp_path_factory.mktemp("auditor"))
    auditor.write_policy({"engine": "sqlite", "path": "none.sqlite3"},
                         [s3_target(iam_moto, auditor, bucket=bucket, prefix="crm/eu")])
    fleet_keys = iam_moto.iam_user("fleet-auditor", printed_policy(auditor, "fleet"))
    keys_file(auditor, "s3.env", fleet_keys)
    return Fleet(iam_moto, bucket, ssh_server, shared, hosts, auditor, fleet_keys)


def _postgres_host(tmp_path_factory, moto: MotoServer, bucket: str, pg_server) -> Host:
    """crm-ap-1: a PostgreSQL CRM whose policy requires a drill it never ran."""
    ws = Workspace(tmp_path_factory.mktemp("crm-ap"))
    database = f"crm_{uuid.uuid4().hex[:8]}"
    pg_server.create_role_and_database(PG_ROLE, PG_ROLE_PASSWORD, database)
    with pg_server.connect(database, PG_ROLE, PG_ROLE_PASSWORD) as conn:
        conn.execute("CREATE TABLE customers (id serial PRIMARY KEY, email text)")
        conn.execute("INSERT INTO customers (email) SELECT 'c' || i || '@example.com' FROM generate_series(1, 50) i")
    ws.secret("db.pass", PG_ROLE_PASSWORD)
    return make_host(ws, moto, bucket, policy="crm-ap", more=[], publish_to=["offsite"],
                     database={"engine": "postgresql", "host": "127.0.0.1", "port": pg_server.port, "user": PG_ROLE,
                               "password": {"file": "db.pass"}, "name": database},
                     compliance={"rules": ["3-2-1", "rpo", "drill"]})


def hosts_of(result: Result) -> dict[str, dict]:
    return {h["host"]: h for h in json.loads(result.stdout)["hosts"]}


@contextmanager
def s3_object(fleet: Fleet, key: str, body: bytes) -> Iterator[None]:
    """Put (or replace) one object with the administrator's keys, and put back what was there."""
    try:
        before = fleet.s3().get_object(Bucket=fleet.bucket, Key=key)["Body"].read()
    except botocore.exceptions.ClientError:
        before = None
    fleet.s3().put_object(Bucket=fleet.bucket, Key=key, Body=body)
    try:
        yield
    finally:
        if before is None:
            fleet.s3().delete_object(Bucket=fleet.bucket, Key=key)
        else:
            fleet.s3().put_object(Bucket=fleet.bucket, Key=key, Body=before)


def tree(folder: Path) -> dict[str, tuple[int, int]]:
    """Every entry below a folder (links not followed): its size and modification time in ns."""
    found = {}
    for root, dirs, files in os.walk(folder):
        for name in [*dirs, *files]:
            info = (Path(root) / name).lstat()
            found[str((Path(root) / name).relative_to(folder))] = (info.st_size, info.st_mtime_ns)
    return found


def test_a_failing_host_and_a_stale_one_are_shown_and_the_fleet_exits_1(fleet):
    result = fleet.status()
    assert result.returncode == 1, result.output
    shown = json.loads(result.stdout)
    assert shown["verdict"] == "FAIL" and shown["ignored"] == 0 and shown["error"] is None
    hosts = hosts_of(result)
    assert set(hosts) == {"crm-eu-1", "crm-us-1", "crm-ap-1"}
    for name in ("crm-eu-1", "crm-us-1"):
        assert (hosts[name]["state"], hosts[name]["published_verdict"], hosts[name]["stale"]) == ("ok", "PASS",
                                                                                                  False), name
        assert hosts[name]["newest_verified_age_s"] is not None and hosts[name]["databases"] == ["bank"]
    failing = hosts["crm-ap-1"]
    assert (failing["state"], failing["policy"], failing["stale"]) == ("failing", "crm-ap", False)
    assert {"rule": "drill", "required": True, "status": "FAIL"} in failing["rules"]
    assert failing["problem"] == "fails drill" and "on crm-ap-1: opsctl status" in failing["hint"]
    assert failing["drill"] is None

    # crm-us-1 stops publishing: its document grows older than its own RPO (24h). Rewritten in the bucket, as
    # anyone with the bucket's keys could, and as a day's wait would.
    host = fleet.hosts["crm-us"]
    document = json.loads(fleet.s3().get_object(Bucket=fleet.bucket, Key=host.key)["Body"].read())
    document["published_at"] = (datetime.now(UTC) - timedelta(days=2)).isoformat(timespec="seconds")
    with s3_object(fleet, host.key, json.dumps(document).encode()):
        stale = fleet.status()
        text = fleet.auditor.opsctl("fleet", "status", "--target", "offsite")
    assert stale.returncode == 1 and text.returncode == 1, stale.output
    us = hosts_of(stale)["crm-us-1"]
    assert (us["stale"], us["state"], us["published_verdict"], us["status"]) == (True, "stale", "PASS", "FAIL")
    assert "last published 2d ago, more than its RPO 1d" in us["problem"]
    assert "STALE" in text.stdout and "crm-us-1" in text.stdout and "opsctl schedule status" in text.stdout
    assert "2 of 3 hosts need attention: crm-ap-1 failing, crm-us-1 stale" in text.stdout
    assert not hosts_of(fleet.status())["crm-us-1"]["stale"]  # put back as it was


def test_every_host_passing_and_fresh_exits_0_and_reading_writes_nothing(fleet):
    """crm-eu-1 and crm-us-1 publish to the NAS too: side by side there, both pass."""
    eu, us = fleet.hosts["crm-eu"], fleet.hosts["crm-us"]
    before = tree(fleet.shared)
    result = fleet.status(ws=eu.ws, target="nas")
    assert result.returncode == 0, result.output
    assert {name: h["state"] for name, h in hosts_of(result).items()} == {"crm-eu-1": "ok", "crm-us-1": "ok"}
    assert json.loads(result.stdout)["location"].endswith(f"{fleet.shared}/fleet)")
    assert tree(fleet.shared) == before, "fleet status wrote to the NAS"
    # crm-us-1 publishes to its local folder too: the fleet beside that repository holds it alone.
    local = fleet.status(ws=us.ws, target="local")
    assert local.returncode == 0 and list(hosts_of(local)) == ["crm-us-1"], local.output
    assert (us.ws.root / "fleet" / "crm-us" / "crm-us-1.json").is_file()
    text = eu.ws.opsctl("fleet", "status", "--target", "nas")
    assert text.returncode == 0 and "PASS  fleet at nas" in text.stdout, text.output
    assert "2 hosts, each protected as its policy requires and published within its RPO" in text.stdout


def test_a_garbage_document_makes_the_fleet_unknown_and_is_listed_with_its_problem(fleet):
    eu = fleet.hosts["crm-eu"]
    garbage = fleet.shared / "fleet" / "crm-eu" / "crm-eu-9.json"
    garbage.write_bytes(b'{"format": "opsctl-fleet/1", "host": "crm-eu-9", "status": "all good, trust me"}')
    try:
        result = fleet.status(ws=eu.ws, target="nas")
    finally:
        garbage.unlink()
    assert result.returncode == 3, result.output
    hosts = hosts_of(result)
    assert hosts["crm-eu-1"]["state"] == "ok" and hosts["crm-us-1"]["state"] == "ok"
    assert hosts["crm-eu-9"]["state"] == "invalid" and hosts["crm-eu-9"]["published_verdict"] is None
    assert "fleet/crm-eu/crm-eu-9.json is not a valid opsctl status document: policy is missing" \
        in hosts["crm-eu-9"]["problem"]


def test_links_huge_files_and_odd_names_in_the_fleet_folder_are_refused_and_nothing_lands_outside(fleet, tmp_path):
    eu, us = fleet.hosts["crm-eu"], fleet.hosts["crm-us"]
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.json").write_text("victim")
    folder = fleet.shared / "fleet" / "crm-eu"
    original = (folder / "crm-eu-1.json").read_bytes()
    (folder / "crm-eu-1.json").unlink()
    (folder / "crm-eu-1.json").symlink_to(outside / "victim.json")
    with (folder / "crm-eu-2.json").open("wb") as huge:
        huge.truncate(ONE_MIB + 1)
    (folder / "x y.json").write_bytes(original)
    (fleet.shared / "fleet" / "odd name").mkdir()
    (fleet.shared / "fleet" / "notes.txt").write_bytes(original)
    try:
        result = fleet.status(ws=eu.ws, target="nas")
        assert result.returncode == 3, result.output
        hosts = hosts_of(result)
        assert "symbolic link, not a document" in hosts["crm-eu-1"]["problem"]
        assert "larger than 1 MiB" in hosts["crm-eu-2"]["problem"]
        assert json.loads(result.stdout)["ignored"] == 3  # x y.json, odd name/, notes.txt: counted, never read

        # The next job replaces the link itself (a rename), never writes through it.
        ok(eu.ws.opsctl("backup"))
        assert (outside / "victim.json").read_text() == "victim" and os.listdir(outside) == ["victim.json"]
        assert not (folder / "crm-eu-1.json").is_symlink()
        assert json.loads((folder / "crm-eu-1.json").read_bytes())["host"] == "crm-eu-1"
    finally:
        (folder / "crm-eu-2.json").unlink()
        (folder / "x y.json").unlink()
        (fleet.shared / "fleet" / "odd name").rmdir()
        (fleet.shared / "fleet" / "notes.txt").unlink()

    # A link in place of the policy's folder (on the NAS) or of the fleet folder itself (local): the job still
    # works, says the status was not published, and nothing is written where the links lead.
    folder.rename(fleet.shared / "fleet" / "crm-eu.aside")
    folder.symlink_to(outside)
    local = us.ws.root / "fleet"
    local.rename(us.ws.root / "fleet.aside")
    local.symlink_to(outside)
    try:
        for ws, target in ((eu.ws, "nas"), (us.ws, "local")):
            job = ws.opsctl("backup")
            assert job.returncode == 0, job.output
            assert f"status was not published to the fleet folder of {target}" in job.stderr, job.stderr
            assert "symbolic link or a file, not a folder" in job.stderr and "Traceback" not in job.output
        assert os.listdir(outside) == ["victim.json"]
    finally:
        folder.unlink()
        (fleet.shared / "fleet" / "crm-eu.aside").rename(folder)
        local.unlink()
        (us.ws.root / "fleet.aside").rename(local)


def test_hostile_keys_in_the_bucket_are_counted_or_refused(fleet):
    huge = b"{" + b" " * ONE_MIB + b"}"
    planted = {"crm/fleet/crm-eu/crm-eu-7.json": huge, "crm/fleet/stray.json": b"{}",
               "crm/fleet/crm-eu/deeper/x.json": b"{}", "crm/fleet/bad name/h.json": b"{}",
               "crm/fleet/crm-eu/notes.txt": b"{}"}
    with s3_object(fleet, *planted.popitem()), s3_object(fleet, *planted.popitem()), \
            s3_object(fleet, *planted.popitem()), s3_object(fleet, *planted.popitem()), \
            s3_object(fleet, *planted.popitem()):
        result = fleet.status()
    assert result.returncode == 1, result.output  # crm-ap-1 still fails: FAIL outranks unknown
    shown = json.loads(result.stdout)
    assert shown["ignored"] == 4
    assert "larger than 1 MiB" in hosts_of(result)["crm-eu-7"]["problem"]


def test_published_documents_hold_no_secret(fleet):
    documents = list(fleet.fleet_objects().values())
    documents += [p.read_bytes() for p in (fleet.shared / "fleet").rglob("*.json")]
    us = fleet.hosts["crm-us"]
    documents += [p.read_bytes() for p in (us.ws.root / "fleet").rglob("*.json")]
    assert len(documents) == 6  # eu: S3 and NAS; us: S3, NAS and local; ap: S3
    secrets = [PG_ROLE_PASSWORD, fleet.fleet_keys["AWS_SECRET_ACCESS_KEY"], fleet.moto.credentials[
        "AWS_SECRET_ACCESS_KEY"], *fleet.sshd.identity_file.read_text().splitlines()[1:-1]]
    for host in fleet.hosts.values():
        secrets += [host.ws.repository_password, host.keys["AWS_SECRET_ACCESS_KEY"], host.keys["AWS_ACCESS_KEY_ID"]]
    for data in documents:
        text = data.decode()
        assert json.loads(text)["format"] == "opsctl-fleet/1"
        for secret in secrets:
            assert secret not in text
    # The documents must say something: the check above would pass on empty files.
    assert any("crm-ap-1" in d.decode() and '"rule":"drill"' in d.decode() for d in documents)


def test_fleet_keys_read_the_fleet_and_nothing_of_any_repository(fleet):
    auditor = fleet.s3(fleet.fleet_keys)
    eu = fleet.hosts["crm-eu"]
    assert json.loads(auditor.get_object(Bucket=fleet.bucket, Key=eu.key)["Body"].read())["host"] == "crm-eu-1"
    repository = fleet.s3().list_objects_v2(Bucket=fleet.bucket, Prefix="crm/eu/").get("Contents", [])
    for folder in ("keys/", "data/", "config"):
        key = next(o["Key"] for o in repository if o["Key"].startswith(f"crm/eu/{folder}"))
        with pytest.raises(botocore.exceptions.ClientError, match="AccessDenied"):
            auditor.get_object(Bucket=fleet.bucket, Key=key)
    for write in (lambda: auditor.put_object(Bucket=fleet.bucket, Key=eu.key, Body=b"{}"),
                  lambda: auditor.delete_object(Bucket=fleet.bucket, Key=eu.key)):
        with pytest.raises(botocore.exceptions.ClientError, match="AccessDenied"):
            write()
    # The backup keys of one host publish its own document, and cannot touch another host's.
    backup = fleet.s3(eu.keys)
    backup.put_object(Bucket=fleet.bucket, Key=eu.key, Body=fleet.s3().get_object(
        Bucket=fleet.bucket, Key=eu.key)["Body"].read())
    with pytest.raises(botocore.exceptions.ClientError, match="AccessDenied"):
        backup.put_object(Bucket=fleet.bucket, Key=fleet.hosts["crm-us"].key, Body=b"{}")
    # Nor a peer's of its own policy, nor anything else in its policy's folder (a flood to hide others).
    for key in ("crm/fleet/crm-eu/crm-eu-2.json", "crm/fleet/crm-eu/junk-00001"):
        with pytest.raises(botocore.exceptions.ClientError, match="AccessDenied"):
            backup.put_object(Bucket=fleet.bucket, Key=key, Body=b"{}")


def test_the_fleet_page_shows_every_host_and_escapes_a_hostile_name(fleet, tmp_path):
    us = fleet.hosts["crm-us"]
    document = json.loads(fleet.s3().get_object(Bucket=fleet.bucket, Key=us.key)["Body"].read())
    document["host"] = "<img src=x onerror=alert(1)>"
    page = tmp_path / "fleet.html"
    with s3_object(fleet, "crm/fleet/crm-us/crm-us-9.json", json.dumps(document).encode()):
        result = fleet.auditor.opsctl("fleet", "status", "--target", "offsite", "--html", str(page))
    assert result.returncode == 1, result.output
    html = page.read_text()
    assert "&lt;img src=x onerror=alert(1)&gt;" in html and "<img" not in html
    assert "<script" not in html and 'tr class="failing"' in html

    shown = render(page, tmp_path)
    assert shown.size == (1200, 1600) and not shown.blank, "the screenshot is blank"
    assert '<h1 id="verdict">Fleet FAIL</h1>' in shown.dom
    for host in ("crm-eu-1", "crm-us-1", "crm-ap-1", "crm-us-9"):
        assert f'<strong class="host">{host}</strong>' in shown.dom, host
    assert "<img" not in shown.dom and "&lt;img src=x" in shown.dom
    # Run again: the page opsctl wrote is replaced; any other file is not.
    assert fleet.auditor.opsctl("fleet", "status", "--target", "offsite", "--html", str(page)).returncode == 1
    (tmp_path / "mine.html").write_text("<p>my notes</p>")
    refused = fleet.auditor.opsctl("fleet", "status", "--target", "offsite", "--html", str(tmp_path / "mine.html"))
    assert refused.returncode == 2 and (tmp_path / "mine.html").read_text() == "<p>my notes</p>"


# --- hostile and slow storage ----------------------------------------------------------------------------------------


def put_many(fleet: Fleet, keys: list[str]) -> None:
    s3 = fleet.s3()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda key: s3.put_object(Bucket=fleet.bucket, Key=key, Body=b"x"), keys))


def delete_many(fleet: Fleet, keys: list[str]) -> None:
    for start in range(0, len(keys), 1000):
        objects = [{"Key": key} for key in keys[start:start + 1000]]
        fleet.s3().delete_objects(Bucket=fleet.bucket, Delete={"Objects": objects, "Quiet": True})


def test_keys_flooding_one_policy_s_folder_hide_no_other_policy(fleet):
    """10,000 junk keys beside crm-ap-1's document, half of them deeper down: more keys than opsctl lists, yet each
    policy's folder is listed on its own, and each "subfolder" of junk is one entry."""
    junk = [f"crm/fleet/crm-ap/junk-{i:05d}" for i in range(5000)] + \
           [f"crm/fleet/crm-ap/deeper/{i:05d}.json" for i in range(5000)]
    put_many(fleet, junk)
    try:
        result = fleet.status()
    finally:
        delete_many(fleet, junk)
    assert result.returncode == 1, result.output  # crm-ap-1 fails, as it did before the flood
    assert set(hosts_of(result)) == {"crm-eu-1", "crm-us-1", "crm-ap-1"}
    shown = json.loads(result.stdout)
    assert (shown["cut"], shown["ignored"]) == ([], 5001)


def test_a_folder_flooded_past_what_opsctl_lists_makes_the_fleet_unknown(fleet):
    """Both hosts on the NAS pass; one policy's folder holds more entries than opsctl lists: a host may be hidden
    there, so the fleet cannot pass, and the other policy's folder is still read."""
    folder = fleet.shared / "fleet" / "crm-eu"
    junk = [folder / f"junk-{i:05d}" for i in range(10_001)]
    for path in junk:
        path.touch()
    try:
        result = fleet.status(ws=fleet.hosts["crm-eu"].ws, target="nas")
    finally:
        for path in junk:
            path.unlink()
    assert result.returncode == 3, result.output
    shown = json.loads(result.stdout)
    assert shown["verdict"] == "UNKNOWN" and shown["cut"] == ["fleet/crm-eu/"]
    assert hosts_of(result)["crm-us-1"]["state"] == "ok"
    assert "(fleet/crm-eu/ only in part), so some hosts may be missing" in shown["summary"]


def test_a_fresh_document_over_data_older_than_the_rpo_fails(fleet):
    """crm-us-1 published PASS a minute ago, from a check; its newest verified snapshot is 47h old (RPO 24h)."""
    host = fleet.hosts["crm-us"]
    document = json.loads(fleet.s3().get_object(Bucket=fleet.bucket, Key=host.key)["Body"].read())
    now = datetime.now(UTC)
    document["published_at"] = (now - timedelta(minutes=1)).isoformat(timespec="seconds")
    old = (now - timedelta(hours=47)).isoformat(timespec="seconds")
    for target in document["status"]["targets"]:
        target["newest_verified_at"] = target["newest_snapshot_at"] = old
        for times in target["databases"].values():
            times["newest_verified_at"] = times["newest_snapshot_at"] = old
    with s3_object(fleet, host.key, json.dumps(document).encode()):
        result = fleet.status()
    us = hosts_of(result)["crm-us-1"]
    assert (us["state"], us["published_verdict"], us["stale"], us["data_too_old"]) == ("failing", "PASS", False, True)
    assert us["problem"] == "the newest verified snapshot is 1d23h old, more than its RPO 1d"
    assert {"rule": "rpo", "required": True, "status": "FAIL"} in us["rules"]


class _FreezeAfter(Checkpoints):
    """Stops the storage's server (SIGSTOP: it hangs, it is not gone) once `reads` documents were read."""

    def __init__(self, reads: int, pid: int) -> None:
        self.reads, self.pid, self.count, self.lock = reads, pid, 0, threading.Lock()

    def reached(self, step: str) -> None:
        if step == "fleet-document-read":
            with self.lock:
                self.count += 1
                if self.count == self.reads:
                    os.kill(self.pid, signal.SIGSTOP)


def test_documents_not_read_in_time_are_listed_and_the_rest_kept(fleet):
    us = json.loads(fleet.s3().get_object(Bucket=fleet.bucket, Key=fleet.hosts["crm-us"].key)["Body"].read())
    more = {f"crm/fleet/crm-us/crm-us-{i:02d}.json": json.dumps({**us, "host": f"crm-us-{i:02d}"}).encode()
            for i in range(10, 40)}
    s3 = fleet.s3()
    for key, body in more.items():
        s3.put_object(Bucket=fleet.bucket, Key=key, Body=body)
    hangs = _FreezeAfter(5, fleet.moto._process.pid)
    try:
        result = CliRunner().invoke(main, ["--policy", str(fleet.auditor.root / "policy.yaml"), "--json", "fleet",
                                           "status", "--target", "offsite", "--timeout", "3"], obj=hangs)
    finally:
        os.kill(fleet.moto._process.pid, signal.SIGCONT)
        delete_many(fleet, list(more))
    shown = json.loads(result.stdout)
    assert shown["error"] is None, result.output
    late = [h for h in shown["hosts"] if h["problem"] == "not read within 3 s: the storage answered too slowly"]
    read = [h for h in shown["hosts"] if h["published_at"] is not None]
    assert len(read) >= 5 and len(late) >= 33 - 5 - 8 and len(read) + len(late) == 33, result.output
    assert all(h["state"] == "unreadable" and "--timeout" in h["hint"] for h in late)
    assert shown["summary"].endswith(f"and {len(late) + 1 - 10} more")  # crm-ap-1 fails too; ten are named


def test_a_frozen_nas_holds_a_job_s_end_no_longer_than_the_publishing_deadline(tmp_path, sftp_endpoint,
                                                                                restic_binary, monkeypatch,  # noqa: ARG001
                                                                                caplog):
    """The NAS hangs (SIGSTOP) right after the backup reached it: publishing gives up by its deadline (the policy's
    stall_timeout here, 6 s; 30 s at most), over the connection opened when the backup started, and opens no
    second one to a NAS that hangs."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / ".cache"))
    ws = Workspace(tmp_path)
    make_bank(ws.root / "bank.sqlite3")
    nas = sftp_target(sftp_endpoint, "nas", path=str(sftp_endpoint.root / f"frozen-{uuid.uuid4().hex[:8]}" / "crm"))
    ws.write_policy({"engine": "sqlite", "path": "bank.sqlite3"}, [local_target(), nas],
                    fleet={"publish_to": ["nas"], "host": "h1"}, stall_timeout="6s")
    ok(ws.opsctl("init"))
    took: list[float] = []
    publishing = FleetPublish.finished

    def frozen(self, run, outcome) -> None:
        freeze(sftp_endpoint)
        started = time.monotonic()
        try:
            publishing(self, run, outcome)
        finally:
            took.append(time.monotonic() - started)
            freeze(sftp_endpoint, signal.SIGCONT)

    monkeypatch.setattr(FleetPublish, "finished", frozen)
    result = CliRunner().invoke(main, ["--policy", str(ws.root / "policy.yaml"), "backup"])
    assert result.exit_code == 0, result.output
    assert took[0] < 6 + 3, took  # before: the stall timeout, then 15 s more for a second login
    assert "status was not published to the fleet folder of nas (it " in caplog.text
    assert "the storage may hang); the next job publishes it again" in caplog.text


# --- races on a NAS: another account's move made at the worst moment, every time -----------------------------------


class Racing:
    """The real SFTP session; right before each call named in `calls`, `move(arguments)` may act on the NAS."""

    def __init__(self, sftp, calls: tuple[str, ...], move: Callable[[tuple], None]) -> None:
        self._sftp, self._calls, self._move = sftp, calls, move

    def __getattr__(self, name: str):
        real = getattr(self._sftp, name)
        if name not in self._calls:
            return real

        def raced(*args, **kwargs):
            self._move(args)
            return real(*args, **kwargs)
        return raced


@contextmanager
def nas_fleet(server: SshServer) -> Iterator[tuple[object, Path]]:
    """The fleet folder of a repository of its own on the NAS, opened as opsctl opens it."""
    base = server.root / f"race-{uuid.uuid4().hex[:8]}"
    base.mkdir()
    config = SftpTargetConfig.model_validate(sftp_target(server, "nas", path=str(base / "crm")))
    with target_for(config).fleet() as files:
        yield files, base / "fleet"


def test_a_link_swapped_in_before_a_document_is_opened_is_refused(sftp_endpoint, tmp_path):
    with nas_fleet(sftp_endpoint) as (files, folder):
        files.publish("crm-eu", "h1", b'{"mine": 1}')
        document = folder / "crm-eu" / "h1.json"
        elsewhere = tmp_path / "elsewhere.json"  # a file the NAS account may read, alike in size and time
        elsewhere.write_bytes(b'{"else": 1}')
        info = document.stat()
        os.utime(elsewhere, ns=(info.st_atime_ns, info.st_mtime_ns))

        def swap(args: tuple) -> None:
            if str(args[0]).endswith("/h1.json") and not document.is_symlink():
                document.unlink()
                document.symlink_to(elsewhere)

        files.sftp = Racing(files.sftp, ("open",), swap)
        with pytest.raises(RefusedDocument, match="is a symbolic link, not a document"):
            files.read("crm-eu", "h1")


def test_a_policy_folder_swapped_for_a_link_before_the_rename_gets_nothing(sftp_endpoint, tmp_path):
    with nas_fleet(sftp_endpoint) as (files, folder):
        files.publish("crm-eu", "h1", b"{}")
        outside = tmp_path / "outside"
        outside.mkdir()
        policy_folder = folder / "crm-eu"

        def swap(args: tuple) -> None:
            if str(args[0]).endswith(".tmp") and not policy_folder.is_symlink():
                policy_folder.rename(folder / "crm-eu.aside")
                policy_folder.symlink_to(outside)

        files.sftp = Racing(files.sftp, ("open",), swap)
        with pytest.raises(RefusedDocument, match="fleet/crm-eu is a symbolic link or a file, not a folder"):
            files.publish("crm-eu", "h1", b'{"second": 1}')
        assert os.listdir(outside) == []  # its copy written aside there is removed; nothing renamed into place


def test_a_policy_folder_that_vanishes_while_the_fleet_is_listed_is_passed_over(sftp_endpoint):
    with nas_fleet(sftp_endpoint) as (files, folder):
        files.publish("crm-aa", "h1", b"{}")
        files.publish("crm-bb", "h2", b"{}")

        def vanish(args: tuple) -> None:
            if str(args[0]).endswith("/crm-aa") and (folder / "crm-aa").exists():
                shutil.rmtree(folder / "crm-aa")

        files.sftp = Racing(files.sftp, ("listdir_iter", "listdir_attr"), vanish)
        listing = files.listing()
        assert (listing.documents, listing.ignored) == ((("crm-bb", "h2"),), 1)

