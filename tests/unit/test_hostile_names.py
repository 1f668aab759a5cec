"""Names a hostile target may list: only restic's exact layout is copied; a name that climbs out is reported."""

from __future__ import annotations

import pytest

from opsctl.targets.errors import HostileTarget, TargetError, shown
from opsctl.targets.local import LocalFiles
from opsctl.targets.replicate import FORGOTTEN, copy_file, forgotten, restic_files, restic_name
from opsctl.targets.s3 import S3Files

ID = "ab" + "0" * 62


class Listing:
    """A target that lists whatever it is told to (the attacker), and holds nothing."""

    display = "evil (sftp backup@nas:/volume1/crm)"

    def __init__(self, *names: str) -> None:
        self.names = set(names)
        self.written: list[str] = []

    def list(self, folder: str) -> set[str]:
        return {n for n in self.names if n.startswith(f"{folder}/")}

    def read(self, _name: str) -> bytes:
        return b""

    def write_new(self, name: str, _content: bytes) -> bool:
        self.written.append(name)
        return True

    def exists(self, _name: str) -> bool:
        return False

    def make_layout(self) -> None:
        pass

    def clean_spool(self, older_than_s: float = 3600) -> None:
        pass


@pytest.mark.parametrize("name", ["config", f"keys/{ID}", f"index/{ID}", f"snapshots/{ID}", f"data/ab/{ID}"])
def test_restic_layout_is_accepted(name):
    assert restic_name(name)


@pytest.mark.parametrize("name", [
    f"data/cd/{ID}",  # the subfolder must be the ID's first two hex digits
    f"data/{ID}", f"locks/{ID}", f"keys/{ID.upper()}", f"keys/{ID}\n", f"keys/{ID}/x", f"keys/x/{ID}",
    f"/keys/{ID}", f"./keys/{ID}", "config/", "./config", f"{FORGOTTEN}/{ID}",
])
def test_anything_else_is_not_a_restic_file(name):
    assert not restic_name(name)


@pytest.mark.parametrize("name", [f"index/../../x/{ID}", f"index//{ID}", f"index/./{ID}", f"data/ab/../../../{ID}"])
def test_a_name_that_climbs_out_is_reported_and_nothing_is_copied(name):
    source, dest = Listing(name), Listing()
    folder = name.split("/")[0]
    with pytest.raises(TargetError) as raised:
        restic_files(source, folder)
    assert "evil (sftp" in raised.value.message and "looks tampered with" in raised.value.message
    assert dest.written == []


def test_a_listing_outside_the_folder_asked_for_is_reported():
    lying = Listing()
    lying.list = lambda _folder: {f"keys/{ID}"}  # type: ignore[method-assign]
    with pytest.raises(TargetError):
        restic_files(lying, "index")


def test_restic_leftovers_and_stray_files_are_silently_ignored():
    source = Listing(f"index/{ID}-tmp-123", f"index/{ID}", "index/.DS_Store", f"data/ab/{ID}-tmp-9", "data/@eaDir")
    assert restic_files(source, "index") == {f"index/{ID}"}
    assert restic_files(source, "data") == set()


def test_copy_refuses_a_name_from_a_raw_listing():
    # keys rotate copies a key by a name it found in a listing: copy_file itself must refuse a climbing one.
    source, dest = Listing(), Listing()
    with pytest.raises(TargetError):
        copy_file(source, dest, f"keys/../../x/{ID}")
    assert dest.written == []


def test_forgotten_marks_are_snapshot_ids_only():
    dest = Listing(f"{FORGOTTEN}/{ID}", f"{FORGOTTEN}/notes.txt", f"{FORGOTTEN}/sub/{ID}")
    assert forgotten(dest) == {ID}
    with pytest.raises(TargetError):
        forgotten(Listing(f"{FORGOTTEN}/../{ID}"))


def test_a_planted_name_is_printed_harmlessly():
    assert shown("index/\x1b[2Jboo") == "index/?[2Jboo"
    assert len(shown("x" * 10_000)) < 200


def test_a_file_larger_than_restic_writes_is_never_read_into_memory(tmp_path):
    """A NAS can show a huge (sparse) file under a pack's name: refused by its size, before any byte is read."""
    pack = tmp_path / "data" / "ab" / ID
    pack.parent.mkdir(parents=True)
    with open(pack, "wb") as handle:
        handle.truncate(1 << 40)  # a terabyte, and no disk used
    with LocalFiles(tmp_path, "nas (mount /mnt/nas/crm)") as files, pytest.raises(HostileTarget) as refused:
        files.read(f"data/ab/{ID}")
    assert "larger than restic ever writes" in refused.value.message


def test_s3_folder_markers_are_no_files_and_no_attack():
    """The AWS console's "Create folder" leaves a zero-byte key ending in "/": an honest bucket, not a hostile one."""

    class Paginator:
        def paginate(self, **_: object) -> list[dict[str, list[dict[str, str]]]]:
            return [{"Contents": [{"Key": "crm/data/"}, {"Key": f"crm/data/ab/{ID}"}]}]

    class Client:
        def get_paginator(self, _name: str) -> Paginator:
            return Paginator()

    assert S3Files(Client(), "bucket", "crm", "offsite (s3)").list("data") == {f"data/ab/{ID}"}
