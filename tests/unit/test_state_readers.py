"""Need-to-know in state_dir (issue 18): what the policy's report_group may reach, and what happens when it cannot.

Handing a folder to a group needs root here (CI runs as root); elsewhere these tests skip.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import stat
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from opsctl.audit import runs
from opsctl.audit.readers import record_mode, share_state_dir

GROUP = "nogroup"  # on every Debian; any group root may hand out would do


@pytest.fixture
def gid() -> int:
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("handing folders to a group needs root: CI runs these tests as root")
        pytest.skip("handing folders to a group needs root")
    return grp.getgrnam(GROUP).gr_gid


def mode(path: Path) -> tuple[str, int]:
    info = path.stat()
    return f"{stat.S_IMODE(info.st_mode):o}", info.st_gid


def policy(folder: Path, file_mode: int = 0o644) -> Path:
    path = folder / "policy.yaml"
    path.write_text("name: crm\n")
    path.chmod(file_mode)
    return path


def ended(command: str) -> runs.CommandRun:
    return runs.CommandRun(command, "ok", 0, "2026-11-30T06:00:00+00:00", 1.0)


def test_the_group_may_pass_through_state_dir_and_read_the_run_record(tmp_path, gid):
    state = tmp_path / "state"
    runs.record(state, ended("init"), "2026-11-30T05:59:59")  # a record from before the policy named the group
    (state / "audit.jsonl").write_text("{}\n")
    (state / "audit.jsonl").chmod(0o600)
    share_state_dir(state, GROUP, policy(tmp_path))
    assert mode(state) == ("710", gid) and mode(state / "runs") == ("2750", gid)
    assert mode(state / "runs" / "init.json") == ("640", gid)
    runs.record(state, ended("backup"), "2026-11-30T05:59:59")
    assert mode(state / "runs" / "backup.json") == ("640", gid)  # the folder's group, whoever writes
    assert mode(state / "audit.jsonl") == ("600", 0)  # the trail stays root's alone


def test_without_the_group_state_dir_is_private_again_but_a_mode_set_by_hand_stays(tmp_path, gid):  # noqa: ARG001
    state = tmp_path / "state"
    share_state_dir(state, GROUP, policy(tmp_path))
    assert share_state_dir(state, None, policy(tmp_path)) == []
    assert mode(state)[0] == "700" and mode(state / "runs")[0] == "700"
    assert record_mode(state / "runs") == 0o600
    state.chmod(0o750)  # the operator's own choice: not opsctl's to take back
    share_state_dir(state, None, policy(tmp_path))
    assert mode(state)[0] == "750"


def test_a_group_that_does_not_exist_is_a_warning_and_nothing_changes(tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    warnings = share_state_dir(state, "opsctl-no-such-group", policy(tmp_path))
    assert len(warnings) == 1 and "report_group opsctl-no-such-group does not exist" in warnings[0]
    assert "groupadd opsctl-no-such-group" in warnings[0]
    assert mode(state)[0] == "700" and not (state / "runs").exists()


@pytest.fixture
def passable() -> Iterator[Path]:
    """A folder every user may pass into (pytest's own are root's alone: they would be named first)."""
    folder = Path(tempfile.mkdtemp(prefix="opsctl-readers-", dir="/tmp"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_what_keeps_the_group_out_is_named_with_its_fix(passable, gid):  # noqa: ARG001
    tmp_path = passable
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    state = closed / "state"
    warnings = share_state_dir(state, GROUP, policy(tmp_path, 0o600))
    assert any(f"cannot pass through the folder {closed} " in w and f"setfacl -m g:{GROUP}:x {closed}" in w
               for w in warnings), warnings
    assert not any("o+x" in w for w in warnings)  # that would let every user of the host pass
    path = tmp_path / "policy.yaml"
    assert any(f"cannot read the policy file {path}" in w and f"chgrp {GROUP} {path} && chmod 640 {path}" in w
               for w in warnings), warnings
    _let_group_pass(closed, grp.getgrnam(GROUP).gr_gid)  # what setfacl -m g:GROUP:x does
    path.chmod(0o640)
    os.chown(path, -1, grp.getgrnam(GROUP).gr_gid)
    assert [w for w in share_state_dir(state, GROUP, path) if str(closed) in w or "policy" in w] == []
    assert stat.S_IMODE(closed.stat().st_mode) & 0o001 == 0  # others still may not pass


def test_a_link_planted_among_the_records_is_not_followed(tmp_path, gid):
    state = tmp_path / "state"
    share_state_dir(state, GROUP, policy(tmp_path))
    secret = tmp_path / "secret"
    secret.write_text("x")
    secret.chmod(0o600)
    (state / "runs" / "planted.json").symlink_to(secret)
    share_state_dir(state, GROUP, policy(tmp_path))
    assert mode(secret) != ("640", gid) and mode(secret)[0] == "600"


def _let_group_pass(folder: Path, gid: int) -> None:
    """setfacl -m g:GROUP:x FOLDER, written as the kernel keeps it (setfacl itself may not be installed); where the
    file system keeps no ACL, the other fix the warning names: chgrp GROUP + chmod g+x."""
    mode = stat.S_IMODE(folder.stat().st_mode)
    entries = [(0x01, mode >> 6 & 7, 0xFFFFFFFF), (0x04, mode >> 3 & 7, 0xFFFFFFFF), (0x08, 1, gid),
               (0x10, (mode >> 3 & 7) | 1, 0xFFFFFFFF), (0x20, mode & 7, 0xFFFFFFFF)]
    try:
        os.setxattr(folder, "system.posix_acl_access",
                    struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *entry) for entry in entries))
    except OSError:
        os.chown(folder, -1, gid)
        folder.chmod(mode | 0o010)


# --- a report_group that cannot be given (issue 18 review): what an earlier group had is taken back first ---


def shared_earlier(tmp_path: Path) -> Path:
    """A state_dir an earlier run shared with GROUP: 0710, runs/ 2750, a record 0640."""
    state = tmp_path / "state"
    runs.record(state, ended("backup"), "2026-11-30T05:59:59")
    share_state_dir(state, GROUP, policy(tmp_path))
    assert mode(state / "runs" / "backup.json")[0] == "640"
    return state


def assert_private_again(state: Path) -> None:
    own = pwd.getpwuid(os.geteuid()).pw_gid
    assert mode(state) == ("700", own)
    assert mode(state / "runs") == ("700", own)  # set-group-ID cleared too: new records stay the owner's group
    assert mode(state / "runs" / "backup.json") == ("600", own)
    assert record_mode(state / "runs") == 0o600


def test_a_group_gone_takes_back_what_it_had_and_says_so_truly(tmp_path, gid):  # noqa: ARG001
    """The group deleted (groupdel) or mistyped: the warning says the files are private, and they are."""
    state = shared_earlier(tmp_path)
    warnings = share_state_dir(state, "opsctl-no-such-group", policy(tmp_path))
    assert len(warnings) == 1 and "report_group opsctl-no-such-group does not exist" in warnings[0]
    assert "readable by root alone" in warnings[0] or os.geteuid() != 0
    assert_private_again(state)


def test_a_group_the_caller_may_not_give_takes_back_what_an_earlier_one_had(tmp_path, gid, monkeypatch):
    state = shared_earlier(tmp_path)
    real = os.fchown

    def not_a_member(fd: int, uid: int, group: int) -> None:
        if group == gid:  # as for a user outside the group (as root, chgrp to any group works)
            raise PermissionError(1, "Operation not permitted")
        real(fd, uid, group)

    os.chown(state, -1, 0)  # state_dir's group from before: giving it to the group is tried again, and fails
    monkeypatch.setattr(os, "fchown", not_a_member)
    warnings = share_state_dir(state, GROUP, policy(tmp_path))
    assert len(warnings) == 1 and f"cannot give the status files to group {GROUP}" in warnings[0], warnings
    assert "alone" in warnings[0]
    assert_private_again(state)


# --- one descriptor for state_dir (issue 18 review): a link swapped meanwhile steers nothing ---


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A folder of root's that no policy shares (stands for /etc or another policy's state)."""
    folder = tmp_path / "victim"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    return folder


def untouched(folder: Path) -> tuple[str, int, list[str]]:
    return (*mode(folder), sorted(os.listdir(folder)))


def test_the_folder_opened_is_the_one_shared_never_where_a_swapped_link_leads(tmp_path, gid, victim, monkeypatch):
    mine = tmp_path / "mine"
    mine.mkdir(mode=0o700)
    state = tmp_path / "state"
    state.symlink_to(mine)  # the operator's own link: followed, as before
    before = untouched(victim)
    real = grp.getgrnam

    def swapped(name: str) -> grp.struct_group:
        """The link now leads to the victim: after state_dir was opened, before anything is given."""
        state.unlink()
        state.symlink_to(victim)
        return real(name)

    monkeypatch.setattr(grp, "getgrnam", swapped)
    share_state_dir(state, GROUP, policy(tmp_path))
    assert untouched(victim) == before
    assert mode(mine) == ("710", gid) and mode(mine / "runs") == ("2750", gid)


def test_a_state_dir_link_another_user_made_is_not_followed(tmp_path, gid, victim):  # noqa: ARG001
    state = tmp_path / "state"
    state.symlink_to(victim)
    os.lchown(state, pwd.getpwnam("nobody").pw_uid, -1)
    before = untouched(victim)
    warnings = share_state_dir(state, GROUP, policy(tmp_path))
    assert len(warnings) == 1 and "a link another user made" in warnings[0] and "nothing was changed" in warnings[0]
    assert untouched(victim) == before


def test_a_state_dir_that_is_not_the_callers_alone_is_not_shared(tmp_path, gid, victim):  # noqa: ARG001
    os.chown(victim, pwd.getpwnam("nobody").pw_uid, -1)
    before = untouched(victim)
    for group in (GROUP, "opsctl-no-such-group"):
        warnings = share_state_dir(victim, group, policy(tmp_path))
        assert len(warnings) == 1 and "nothing was changed there" in warnings[0], warnings
        assert untouched(victim) == before
    assert share_state_dir(victim, None, policy(tmp_path)) == []  # no group: nothing to give, nothing to say
    assert untouched(victim) == before


# --- another user's files are read without hanging on a FIFO (issue 18 review) ---


def test_a_record_that_is_a_fifo_or_too_big_is_not_read(passable, gid):  # noqa: ARG001
    tmp_path = passable
    state = tmp_path / "state"
    share_state_dir(state, GROUP, policy(tmp_path))
    os.mkfifo(state / "runs" / "backup.json", 0o640)  # nobody writes to it: reading it would wait for ever
    with (state / "runs" / "verify.json").open("wb") as big:
        big.truncate(17 * 1024 * 1024)
    assert runs.read(state, "backup") is None and runs.read(state, "verify") is None
    assert runs.read_all(state) == []
    assert share_state_dir(state, GROUP, policy(tmp_path)) == []  # nor does sharing wait on it
