"""A compromised NAS or bucket is an adversary: whatever it lists or links, opsctl writes only inside the repository.

Each test plants what an attacker who controls one target can plant (a `..` name, a symlinked folder,
a symlinked spool) and checks what a user would notice: nothing appears or disappears outside the
repository, and the target is named as tampered with.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
import time
from contextlib import AbstractContextManager
from pathlib import Path

import boto3
import pytest

from opsctl.policy.load import load_policy
from opsctl.targets import Target, TargetError, target_for
from opsctl.targets.base import RepositoryFiles
from opsctl.targets.replicate import Copier, mark_forgotten, replicate, restic_files
from tests.support.bank import add_documents, make_bank
from tests.support.targets import local_target, s3_target, sftp_target
from tests.support.workspace import Workspace

TAMPERED = "looks tampered with"
PAYLOAD = b"planted by the NAS\n"
PAYLOAD_ID = hashlib.sha256(PAYLOAD).hexdigest()
OLD = time.time() - 7200  # older than the spool's one-hour grace: a clean-up would take it


# --- set-up: real restic repositories made by opsctl -----------------------------------------------


def initialised(ws: Workspace, targets: list[dict]) -> dict[str, Target]:
    """A SQLite bank backed up to `targets` (the first is the primary, the others its replicas)."""
    make_bank(ws.root / "bank.sqlite3")
    ws.write_policy({"engine": "sqlite", "path": "bank.sqlite3"}, targets, lock_wait="2s")
    result = ws.opsctl("init")
    assert result.returncode == 0, result.output
    result = ws.opsctl("backup")
    assert result.returncode == 0, result.output
    add_documents(ws.root / "bank.sqlite3", 5)  # the next backup has new packs to copy
    return {config.name: target_for(config) for config in load_policy(ws.root / "policy.yaml").targets}


@pytest.fixture
def two_local(workspace) -> dict[str, Target]:
    return initialised(workspace, [local_target("local"), local_target("nas")])


@pytest.fixture
def sentinel(workspace) -> Path:
    """A folder outside every repository holding one old file: nothing may appear in it or vanish from it."""
    folder = workspace.root / "outside"
    folder.mkdir()
    keep = folder / "precious.conf"
    keep.write_text("keep me\n")
    os.utime(keep, (OLD, OLD))
    return folder


def untouched(folder: Path) -> bool:
    return sorted(p.name for p in folder.iterdir()) == ["precious.conf"]


def backup_json(ws: Workspace) -> tuple[int, dict[str, dict]]:
    import json

    result = ws.opsctl("--json", "backup")
    document = json.loads(result.stdout)
    assert "targets" in document, result.output  # refused as a whole: not what these tests are about
    return result.returncode, {row["target"]: row for row in document["targets"]}


def fresh_pack_folder(ws: Workspace, dest: Path) -> str:
    """A data/xx folder the primary has and the replica lacks after a new backup: where the next copy writes."""
    result = ws.opsctl("backup", "--target", "local")
    assert result.returncode == 0, result.output
    source = ws.root / "repo-local"
    for folder in sorted((source / "data").iterdir()):
        if set(os.listdir(folder)) - set(os.listdir(dest / "data" / folder.name)):
            return folder.name
    raise AssertionError("the new backup added no pack")


class Hostile:
    """The attacker: a real repository's files, plus names of its choosing with content of its choosing."""

    def __init__(self, real: RepositoryFiles, planted: dict[str, bytes]) -> None:
        self.real = real
        self.planted = planted
        self.display = "evil (local /srv/evil)"

    def list(self, folder: str) -> set[str]:
        return self.real.list(folder) | {n for n in self.planted if n.startswith(f"{folder}/")}

    def read(self, name: str) -> bytes:
        return self.planted[name] if name in self.planted else self.real.read(name)

    def write_new(self, name: str, content: bytes) -> bool:
        return self.real.write_new(name, content)

    def exists(self, name: str) -> bool:
        return name in self.planted or self.real.exists(name)

    def make_layout(self) -> None:
        self.real.make_layout()

    def clean_spool(self, older_than_s: float = 3600) -> None:
        self.real.clean_spool(older_than_s)


def files(target: Target) -> AbstractContextManager[RepositoryFiles]:
    return target.files()


# --- names a source lists ----------------------------------------------------------------------------


def test_dot_dot_name_from_the_source_writes_nothing_outside(two_local, sentinel):
    climbing = f"index/../../outside/{PAYLOAD_ID}"
    with files(two_local["local"]) as real, files(two_local["nas"]) as dest:
        source = Hostile(real, {climbing: PAYLOAD})
        with pytest.raises(TargetError) as raised:
            replicate(source, dest)
    assert untouched(sentinel)
    assert TAMPERED in raised.value.message and "evil (local /srv/evil)" in raised.value.message
    assert "index/../../outside/" in raised.value.message and PAYLOAD.decode().strip() not in raised.value.message


def test_data_name_in_the_wrong_subfolder_is_not_copied(workspace, two_local):
    # data/<2 hex>/<id> only where the 2 hex are the id's first two: anything else is no restic file.
    misplaced = f"data/{'00' if not PAYLOAD_ID.startswith('00') else '01'}/{PAYLOAD_ID}"
    with files(two_local["local"]) as real, files(two_local["nas"]) as dest:
        replicate(Hostile(real, {misplaced: PAYLOAD}), dest)
    assert not (workspace.root / "repo-nas" / misplaced).exists()


@pytest.mark.usefixtures("two_local")
def test_symlinked_file_in_the_primary_is_not_read(workspace):
    # A link to a file elsewhere on this host, named by that file's checksum: a copy would leak it.
    # (A pack no index names: restic's own backup never reads it.)
    secret = workspace.root / "host-secret"
    secret.write_bytes(PAYLOAD)
    planted = Path("data") / PAYLOAD_ID[:2] / PAYLOAD_ID
    (workspace.root / "repo-local" / planted).symlink_to(secret)
    code, rows = backup_json(workspace)
    assert code == 3, rows
    assert rows["local"]["error"] is None
    assert TAMPERED in rows["nas"]["error"] and "local (local " in rows["nas"]["error"]
    assert not (workspace.root / "repo-nas" / planted).exists()


# --- links inside a replica --------------------------------------------------------------------------


@pytest.mark.usefixtures("two_local")
def test_symlinked_data_folder_in_a_replica_gets_nothing_written_through_it(workspace, sentinel):
    folder = fresh_pack_folder(workspace, workspace.root / "repo-nas")
    replica_folder = workspace.root / "repo-nas" / "data" / folder
    shutil.rmtree(replica_folder)
    replica_folder.symlink_to(sentinel)
    code, rows = backup_json(workspace)
    assert code == 3, rows
    assert rows["local"]["error"] is None
    assert "nas (local " in rows["nas"]["error"] and TAMPERED in rows["nas"]["error"], rows["nas"]
    assert f"data/{folder}" in rows["nas"]["error"]
    assert untouched(sentinel)


@pytest.mark.usefixtures("two_local")
def test_symlinked_spool_folder_deletes_nothing(workspace, sentinel):
    spool = workspace.root / "repo-nas" / ".opsctl-incoming"
    spool.rmdir()  # left empty by the last copy
    spool.symlink_to(sentinel)
    code, rows = backup_json(workspace)
    assert code == 3, rows
    assert TAMPERED in rows["nas"]["error"] and ".opsctl-incoming" in rows["nas"]["error"], rows["nas"]
    assert untouched(sentinel)


def test_spool_clean_up_deletes_only_its_own_names(workspace, two_local, sentinel):
    spool = workspace.root / "repo-nas" / ".opsctl-incoming"
    own = spool / f"{PAYLOAD_ID}.0badcafe"  # what a killed copy leaves: opsctl's own form
    foreign = spool / "notes.txt"  # not opsctl's: never deleted, old or not
    for path in (own, foreign):
        path.write_bytes(PAYLOAD)
        os.utime(path, (OLD, OLD))
    link = spool / f"{'a' * 64}.12345678"  # opsctl's form, but a link: removed as a name, never followed
    link.symlink_to(sentinel / "precious.conf")
    os.utime(link, (OLD, OLD), follow_symlinks=False)
    with files(two_local["nas"]) as dest:
        dest.clean_spool()
    assert not own.exists()
    assert foreign.exists()
    assert untouched(sentinel) and (sentinel / "precious.conf").read_text() == "keep me\n"


def test_forgotten_marks_are_never_written_through_a_link(workspace, two_local, sentinel):
    (workspace.root / "repo-nas" / ".opsctl-forgotten").symlink_to(sentinel)
    with pytest.raises(TargetError) as raised, files(two_local["nas"]) as dest:
        mark_forgotten(dest, ["b" * 64])
    assert untouched(sentinel)
    assert TAMPERED in raised.value.message


def test_forgotten_mark_must_be_a_snapshot_id(two_local, sentinel):
    with files(two_local["nas"]) as dest, pytest.raises(TargetError):
        mark_forgotten(dest, ["../../outside/mark"])
    assert untouched(sentinel)


@pytest.mark.usefixtures("two_local")
def test_symlinked_key_in_a_replica_is_reported(workspace, sentinel):
    keys = workspace.root / "repo-nas" / "keys"
    (keys / ("c" * 64)).symlink_to(sentinel / "precious.conf")
    code, rows = backup_json(workspace)
    assert code == 3, rows
    assert TAMPERED in rows["nas"]["error"] and "keys/" in rows["nas"]["error"], rows["nas"]
    assert untouched(sentinel)


@pytest.mark.usefixtures("two_local")
def test_stray_restic_leftovers_stay_silently_ignored(workspace):
    # restic writes ID-tmp-N and renames it when complete; a killed restic leaves it behind. Normal.
    leftover = workspace.root / "repo-local" / "index" / f"{'d' * 64}-tmp-12345"
    leftover.write_bytes(b"half")
    (workspace.root / "repo-local" / "index" / ".DS_Store").write_bytes(b"finder")
    code, rows = backup_json(workspace)
    assert code == 0, rows
    assert not (workspace.root / "repo-nas" / "index" / leftover.name).exists()


# --- a mounted share -----------------------------------------------------------------------------------


def test_mount_target_whose_folder_is_a_link_off_the_share_is_refused(workspace, small_disk):
    share = small_disk.path / "crm"
    initialised(workspace, [local_target("local"), {"name": "nas", "kind": "mount", "path": str(share)}])
    # The NAS swaps the repository folder for a link to the local disk: writes would fill (or land in) it.
    elsewhere = workspace.root / "elsewhere"
    shutil.copytree(share, elsewhere, symlinks=True)
    shutil.rmtree(share)
    share.symlink_to(elsewhere)
    before = sorted(p.relative_to(elsewhere) for p in elsewhere.rglob("*"))
    code, rows = backup_json(workspace)
    assert code == 3, rows
    assert "nas (mount " in rows["nas"]["error"] and TAMPERED in rows["nas"]["error"], rows["nas"]
    assert sorted(p.relative_to(elsewhere) for p in elsewhere.rglob("*")) == before


# --- SFTP: links on the NAS ----------------------------------------------------------------------------


@pytest.fixture
def over_sftp(workspace, sftp_endpoint) -> tuple[dict[str, Target], Path]:
    entry = sftp_target(sftp_endpoint, "nas")
    targets = initialised(workspace, [local_target("local"), entry])
    return targets, Path(entry["path"])


def test_sftp_symlinked_spool_deletes_nothing(workspace, over_sftp, sentinel):
    _, root = over_sftp
    (root / ".opsctl-incoming").rmdir()  # left empty by the last copy
    (root / ".opsctl-incoming").symlink_to(sentinel)
    code, rows = backup_json(workspace)
    assert code == 3, rows
    assert "nas (sftp " in rows["nas"]["error"] and TAMPERED in rows["nas"]["error"], rows["nas"]
    assert untouched(sentinel)


def test_sftp_spool_clean_up_deletes_only_its_own_names(over_sftp, sentinel):
    targets, root = over_sftp
    spool = root / ".opsctl-incoming"
    own, foreign = spool / f"{PAYLOAD_ID}.0badcafe", spool / "notes.txt"
    for path in (own, foreign):
        path.write_bytes(PAYLOAD)
        os.utime(path, (OLD, OLD))
    with files(targets["nas"]) as dest:
        dest.clean_spool()
    assert not own.exists() and foreign.exists()
    assert untouched(sentinel)


def test_sftp_symlinked_data_folder_gets_nothing_written_through_it(workspace, over_sftp, sentinel):
    _, root = over_sftp
    folder = fresh_pack_folder(workspace, root)
    shutil.rmtree(root / "data" / folder)
    (root / "data" / folder).symlink_to(sentinel)
    code, rows = backup_json(workspace)
    assert code == 3, rows
    assert "nas (sftp " in rows["nas"]["error"] and TAMPERED in rows["nas"]["error"], rows["nas"]
    assert untouched(sentinel)


# --- S3: keys the bucket lists -------------------------------------------------------------------------


def test_s3_key_with_dot_dot_is_never_written(workspace, s3_endpoint, sentinel):
    entry = s3_target(s3_endpoint, workspace, "offsite")
    targets = initialised(workspace, [entry, local_target("local")])
    client = boto3.client("s3", endpoint_url=s3_endpoint.endpoint, aws_access_key_id="testing",
                          aws_secret_access_key="testing-secret", region_name="us-east-1")
    client.put_object(Bucket=entry["bucket"], Key=f"crm/index/../../outside/{PAYLOAD_ID}", Body=PAYLOAD)
    listed = client.list_objects_v2(Bucket=entry["bucket"], Prefix="crm/index/")["Contents"]
    assert any(".." in item["Key"] for item in listed), "moto keeps the key as written"
    with files(targets["offsite"]) as source, files(targets["local"]) as dest, pytest.raises(TargetError) as raised:
        replicate(source, dest)
    assert untouched(sentinel)  # index/../../outside from repo-local is that folder
    assert TAMPERED in raised.value.message and "offsite (s3 " in raised.value.message


# --- a prune on the replica while opsctl copies to it ---------------------------------------------------


def test_a_pack_copied_during_the_backup_then_pruned_on_the_replica_is_copied_again_before_its_index(workspace,
                                                                                                     two_local):
    local, nas = workspace.root / "repo-local", workspace.root / "repo-nas"
    pack, index = os.urandom(4096), os.urandom(512)
    pack_name, index_name = _planted_name("data", pack), _planted_name("index", index)
    with files(two_local["local"]) as source, files(two_local["nas"]) as dest:
        copier, ended = Copier(source, dest), threading.Event()
        following = threading.Thread(target=copier.follow, args=(ended, restic_files(source, "data")))
        following.start()
        try:
            _plant(local / pack_name, pack)  # restic completes a pack while the backup runs
            _wait_for((nas / pack_name).exists)
            (nas / pack_name).unlink()  # another client's prune: an unindexed pack is its to delete
            _plant(local / index_name, index)
        finally:
            ended.set()
            following.join()
        copier.catch_up()
    assert (nas / pack_name).read_bytes() == pack, "an index reached the replica without the pack it names"
    assert (nas / index_name).read_bytes() == index


def _planted_name(folder: str, content: bytes) -> str:
    digest = hashlib.sha256(content).hexdigest()
    return f"data/{digest[:2]}/{digest}" if folder == "data" else f"{folder}/{digest}"


def _plant(path: Path, content: bytes) -> None:
    path.parent.mkdir(exist_ok=True)
    temporary = path.with_name(path.name + "-tmp-1")  # as restic: written aside, then renamed whole
    temporary.write_bytes(content)
    temporary.rename(path)


def _wait_for(condition, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the copy that follows the backup never took the pack"
        time.sleep(0.02)
