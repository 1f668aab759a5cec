"""The trust rule (issue 15, threat 2): what another user could change or replace is refused, with the fix.

These tests give files away to `nobody`, so they need root (CI runs as root); elsewhere they skip.
"""

from __future__ import annotations

import json
import os
import pwd
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

import opsctl.actions.context
import opsctl.policy.trust
from opsctl.audit import AuditEntry, append
from opsctl.cli import main
from opsctl.errors import PolicyInvalid
from opsctl.policy import load_policy
from opsctl.policy.fields import check_private_file
from opsctl.policy.load import load_owned_policy, state_dir_despite_errors
from opsctl.policy.trust import UntrustedFile, untrusted, untrusted_state_dir, untrusted_state_dir_to_read


@pytest.fixture
def nobody() -> int:
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("the trust tests give files to another user: CI runs them as root")
        pytest.skip("giving a file to another user needs root")
    return pwd.getpwnam("nobody").pw_uid


def write(path: Path, text: str = "x\n", mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def policy_file(folder: Path, **extra: object) -> Path:
    write(folder / "repository.pass", mode=0o600)
    return write(folder / "policy.yaml", yaml.safe_dump({
        "name": "crm-trust", "database": {"engine": "sqlite", "path": "crm.sqlite3"},
        "targets": [{"name": "local", "kind": "local", "path": "repo"}],
        "repository_password": {"file": "repository.pass"}, "state_dir": "state", **extra}))


def test_own_files_in_private_folders_are_trusted(tmp_path: Path) -> None:
    assert untrusted(write(tmp_path / "policy.yaml")) is None
    assert untrusted(write(tmp_path / "secret", mode=0o600), private=True) is None
    assert untrusted(write(tmp_path / "secret.ro", mode=0o400), private=True) is None
    assert untrusted(tmp_path / "missing") is None  # the caller says "not found" in its own words


def test_a_file_owned_by_another_user_is_refused_with_the_chown_line(tmp_path: Path, nobody: int) -> None:
    path = write(tmp_path / "policy.yaml")
    os.chown(path, nobody, -1)
    distrust = untrusted(path)
    assert distrust is not None
    assert f"{path} is owned by nobody" in distrust.problem
    assert distrust.fix == f"chown root: {path}"


@pytest.mark.parametrize("mode", [0o666, 0o646])  # 0o664: see the group tests below
def test_a_file_others_can_write_is_refused_with_the_chmod_line(tmp_path: Path, mode: int) -> None:
    path = write(tmp_path / "policy.yaml", mode=mode)
    distrust = untrusted(path)
    assert distrust is not None
    assert f"mode {mode:o}" in distrust.problem and distrust.fix == f"chmod go-w {path}"


def test_a_private_file_others_can_read_is_refused(tmp_path: Path) -> None:
    distrust = untrusted(write(tmp_path / "id_ed25519", mode=0o640), private=True)
    assert distrust is not None and distrust.fix == f"chmod 600 {tmp_path / 'id_ed25519'}"


def test_a_folder_others_can_write_lets_them_replace_the_file(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    path = write(shared / "policy.yaml")
    shared.chmod(0o777)
    distrust = untrusted(path)
    assert distrust is not None
    assert f"the folder {shared} can be changed by other users (mode 777)" in distrust.problem
    assert distrust.fix == f"chmod go-w {shared}"
    shared.chmod(0o1777)  # sticky, like /tmp: others cannot replace a file they do not own
    assert untrusted(path) is None


def test_a_folder_owned_by_another_user_lets_them_replace_the_file(tmp_path: Path, nobody: int) -> None:
    theirs = tmp_path / "theirs"
    path = write(theirs / "deep" / "policy.yaml")
    os.chown(theirs, nobody, -1)  # a folder further up counts too: they can rename "deep" away
    distrust = untrusted(path)
    assert distrust is not None and f"the folder {theirs} is owned by nobody" in distrust.problem
    assert distrust.fix.startswith(f"chown root: {theirs}")


def test_a_link_to_a_file_in_an_open_folder_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    target = write(shared / "policy.yaml")
    shared.chmod(0o777)
    link = tmp_path / "opsctl.yaml"
    link.symlink_to(target)
    distrust = untrusted(link)
    assert distrust is not None and str(shared) in distrust.problem


def test_a_link_made_by_another_user_is_refused(tmp_path: Path, nobody: int) -> None:
    target = write(tmp_path / "real.yaml")
    link = tmp_path / "opsctl.yaml"
    link.symlink_to(target)
    assert untrusted(link) is None
    os.lchown(link, nobody, -1)
    distrust = untrusted(link)
    assert distrust is not None and f"{link} is a link made by nobody" in distrust.problem
    assert distrust.fix.startswith(f"rm {link}")


@pytest.mark.parametrize("name", ["/dev/stdin", "/dev/fd/0", "/proc/self/fd/0"])
def test_standard_input_and_pipes_are_the_callers_own(name: str) -> None:
    assert untrusted(Path(name)) is None


def test_state_dir_rules(tmp_path: Path, nobody: int) -> None:
    state = tmp_path / "state"
    assert untrusted_state_dir(state) is None  # not there yet: opsctl makes it 0700
    state.mkdir(mode=0o700)
    assert untrusted_state_dir(state) is None
    state.chmod(0o777)
    distrust = untrusted_state_dir(state)
    assert distrust is not None and distrust.fix == f"chmod 700 {state}"
    state.chmod(0o700)
    os.chown(state, nobody, -1)
    distrust = untrusted_state_dir(state)
    assert distrust is not None and distrust.fix == f"chown -R root: {state} && chmod 700 {state}"


def test_the_loader_refuses_an_untrusted_policy_before_reading_it(tmp_path: Path, nobody: int) -> None:
    path = policy_file(tmp_path)
    os.chown(path, nobody, -1)
    with pytest.raises(UntrustedFile) as refused:
        load_policy(path)
    assert refused.value.exit_code == 2
    assert str(path) in refused.value.message and f"run: chown root: {path}" in (refused.value.hint or "")


def test_the_loader_refuses_a_state_dir_that_is_not_ours(tmp_path: Path, nobody: int) -> None:
    path = policy_file(tmp_path)
    (tmp_path / "state").mkdir()
    os.chown(tmp_path / "state", nobody, -1)
    with pytest.raises(UntrustedFile, match=r"the state_dir: the folder .* is owned by nobody"):
        load_policy(path)


def test_a_secret_in_a_folder_others_can_write_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    secret = write(shared / "db.pass", mode=0o600)
    shared.chmod(0o777)
    with pytest.raises(ValueError, match=f"run: chmod go-w {shared}"):
        check_private_file(secret)


def test_a_secret_owned_by_another_user_names_the_chown(tmp_path: Path, nobody: int) -> None:
    secret = write(tmp_path / "db.pass", mode=0o600)
    os.chown(secret, nobody, -1)
    with pytest.raises(ValueError, match=f"run: chown root: {secret}"):
        check_private_file(secret)


def sftp() -> dict[str, object]:
    return {"name": "nas", "kind": "sftp", "host": "nas.example.test", "user": "backup", "path": "/volume1/crm",
            "identity_file": "id_ed25519", "known_hosts": "known_hosts"}


def test_ssh_key_and_known_hosts_are_checked_where_the_policy_loads(tmp_path: Path, nobody: int) -> None:
    path = policy_file(tmp_path, targets=[sftp()])
    assert load_policy(path).targets  # neither exists yet: the target's own checks say so later
    key = write(tmp_path / "id_ed25519", mode=0o644)
    hosts = write(tmp_path / "known_hosts", mode=0o666)
    with pytest.raises(PolicyInvalid) as refused:
        load_policy(path)
    assert (f"At 'targets[0].identity_file': {key} can be read or changed by other users (mode 644); "
            f"run: chmod 600 {key}") in refused.value.problems
    assert (f"At 'targets[0].known_hosts': {hosts} can be changed by other users (mode 666); "
            f"run: chmod go-w {hosts}") in refused.value.problems
    key.chmod(0o600)
    hosts.chmod(0o644)
    os.chown(key, nobody, -1)
    with pytest.raises(PolicyInvalid) as refused:
        load_policy(path)
    assert any(p.startswith("At 'targets[0].identity_file'") and f"run: chown root: {key}" in p
               for p in refused.value.problems), refused.value.problems
    os.chown(key, 0, -1)
    assert load_policy(path).targets


def test_the_audit_trail_is_never_written_into_another_users_folder(tmp_path: Path, nobody: int) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    os.chown(state, nobody, -1)
    with pytest.raises(UntrustedFile):
        append(state / "audit.jsonl", AuditEntry("backup", None, None, "refused", 2))
    assert not (state / "audit.jsonl").exists()


def test_an_untrusted_policy_does_not_choose_where_its_refusal_is_recorded(tmp_path: Path, nobody: int) -> None:
    path = policy_file(tmp_path, state_dir="/etc/opsctl-planted")
    os.chown(path, nobody, -1)
    assert state_dir_despite_errors(path) == opsctl.policy.load.default_state_dir("")


def test_every_policy_source_is_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, nobody: int) -> None:
    """--policy, $OPSCTL_POLICY, ./opsctl.yaml and /etc/opsctl/policy.yaml (here: a stand-in) alike."""
    path = policy_file(tmp_path)
    os.chown(path, nobody, -1)
    planted = tmp_path / "opsctl.yaml"
    path.rename(planted)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OPSCTL_POLICY", raising=False)
    for args, env, default_paths in (
            (["--policy", str(planted)], {}, None),
            ([], {"OPSCTL_POLICY": str(planted)}, None),
            ([], {}, None),  # ./opsctl.yaml
            ([], {}, (tmp_path / "absent.yaml", planted))):  # as /etc/opsctl/policy.yaml would be
        if default_paths is not None:
            monkeypatch.setattr(opsctl.actions.context, "DEFAULT_POLICY_PATHS", default_paths)
        result = CliRunner(env=env).invoke(main, [*args, "policy", "validate"])
        assert result.exit_code == 2, result.output
        assert "is owned by nobody" in result.stderr and f"chown root: {planted.name}" in result.stderr.replace(
            str(tmp_path) + "/", "")


def test_group_write_is_the_owners_own_with_a_user_private_group(tmp_path, nobody):
    """umask 002 with a private group (Debian's default layout) is fine; a group with other users is not."""
    private = write(tmp_path / "private.yaml", mode=0o664)
    assert untrusted(private) is None
    shared_gid = _a_group_with_another_user(nobody)
    shared = write(tmp_path / "shared.yaml", mode=0o664)
    os.chown(shared, 0, shared_gid)
    distrust = untrusted(shared)
    assert distrust is not None and distrust.fix == f"chmod go-w {shared}"


def _a_group_with_another_user(uid: int) -> int:
    """nobody's own primary group: a group that a user other than root belongs to."""
    return pwd.getpwuid(uid).pw_gid


# --- need-to-know (issue 18): the report group may pass and read; a read-only command may read another's ---


def test_a_state_dir_the_report_group_may_pass_or_read_is_still_ours(tmp_path, nobody):
    """0710 or 0750 with a group other users are in: trusted; writable by that group or by anyone: refused."""
    state = tmp_path / "state"
    state.mkdir()
    os.chown(state, 0, _a_group_with_another_user(nobody))
    for mode in (0o710, 0o750, 0o2750):
        state.chmod(mode)
        assert untrusted_state_dir(state) is None, f"{mode:o}"
    for mode in (0o770, 0o730, 0o703, 0o2770):
        state.chmod(mode)
        distrust = untrusted_state_dir(state)
        assert distrust is not None and distrust.fix == f"chmod 700 {state}", f"{mode:o}"


def test_a_read_only_load_accepts_another_users_policy_only_they_can_change(tmp_path, nobody):
    path = policy_file(tmp_path)
    os.chown(path, nobody, -1)
    with pytest.raises(UntrustedFile):
        load_policy(path, check_state_dir=False)
    assert load_policy(path, check_state_dir=False, read_only=True).name == "crm-trust"
    path.chmod(0o646)
    with pytest.raises(UntrustedFile, match="can be changed by other users"):
        load_policy(path, check_state_dir=False, read_only=True)
    path.chmod(0o644)
    os.chown(tmp_path, _another_user(nobody), -1)  # a third user's folder could swap the file: still refused
    with pytest.raises(UntrustedFile, match="is owned by daemon"):
        load_policy(path, check_state_dir=False, read_only=True)


def test_a_read_only_load_checks_no_file_it_will_not_open(tmp_path, nobody):
    """The auditor holds no password: root's password file (not theirs, not readable) is no reason to refuse."""
    path = policy_file(tmp_path)
    os.chown(tmp_path / "repository.pass", nobody, -1)
    with pytest.raises(PolicyInvalid, match="1 problem"):
        load_policy(path, check_state_dir=False)
    assert load_policy(path, check_state_dir=False, read_only=True).repository_password.file is not None


def test_a_read_only_command_reads_only_the_state_of_the_policys_owner_or_root(tmp_path, nobody, monkeypatch):
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    daemon = _another_user(nobody)
    os.chown(state, nobody, -1)
    assert untrusted_state_dir_to_read(state, nobody) is None  # root reads nobody's policy and nobody's state
    os.chown(state, 0, -1)
    distrust = untrusted_state_dir_to_read(state, nobody)  # nobody's policy must not steer root's own records
    assert distrust is not None and f"{state} is owned by root, not by nobody" in distrust.problem
    monkeypatch.setattr(os, "geteuid", lambda: nobody)  # from here on, the caller is an auditor: nobody
    assert untrusted_state_dir_to_read(state, 0) is None  # root's policy, root's state
    assert untrusted_state_dir_to_read(state, nobody) is None  # their own copy of the policy, root's state
    os.chown(state, daemon, -1)
    assert untrusted_state_dir_to_read(state, daemon) is None  # daemon's policy, daemon's state
    assert untrusted_state_dir_to_read(state, 0) is not None  # root's policy does not name daemon's state
    os.chown(state, nobody, -1)
    assert untrusted_state_dir_to_read(state, daemon) is not None  # daemon's policy must not steer nobody's records
    os.chown(state, daemon, -1)
    state.chmod(0o770)
    os.chown(state, daemon, _a_group_with_another_user(nobody))
    distrust = untrusted_state_dir_to_read(state, daemon)
    assert distrust is not None and distrust.fix == f"chmod go-w {state}"


def test_status_offline_on_another_users_policy_reads_and_writes_nothing(tmp_path, nobody):
    """Root reading nobody's policy: it answers from nobody's records, and writes no record, no audit line and no
    metrics file (the policy names one); a command that writes is still refused."""
    from opsctl.audit import runs

    path = policy_file(tmp_path, metrics={"textfile": "metrics.prom"})
    state = tmp_path / "state"
    runs.record(state, runs.CommandRun("backup", "ok", 0, "2026-11-30T06:00:00+00:00", 1.0), "2026-11-30T05:59:59")
    for found in [state, *state.rglob("*")]:
        os.lchown(found, nobody, -1)
    os.chown(path, nobody, -1)
    before = _tree(tmp_path)
    result = CliRunner().invoke(main, ["--policy", str(path), "--json", "status", "--offline"])
    assert result.exit_code in (0, 1, 3), result.output
    assert json.loads(result.stdout)["mode"] == "offline"
    assert _tree(tmp_path) == before and not (tmp_path / "metrics.prom").exists()
    refused = CliRunner().invoke(main, ["--policy", str(path), "snapshots"])
    assert refused.exit_code == 2 and "is owned by nobody" in refused.stderr


def test_another_users_policy_cannot_point_a_reader_at_the_readers_own_records(tmp_path, nobody):
    """There, what the policy names would be done as the reader (metrics written, their record changed)."""
    path = policy_file(tmp_path, metrics={"textfile": "metrics.prom"})
    (tmp_path / "state").mkdir(mode=0o700)  # root's own
    os.chown(path, nobody, -1)
    result = CliRunner().invoke(main, ["--policy", str(path), "--json", "status", "--offline"])
    assert result.exit_code == 2, result.output
    assert f"{tmp_path / 'state'} is owned by root, not by nobody" in result.stderr
    assert not (tmp_path / "metrics.prom").exists() and not (tmp_path / "state" / "runs").exists()


# --- whose policy it is: the owner of the file read, never of what the path names later (issue 18 review) ---


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A folder of root's that another user's policy names as its state_dir (stands for /etc, or root's state)."""
    folder = tmp_path / "victim"
    folder.mkdir()
    folder.chmod(0o755)
    return folder


def untouched(folder: Path) -> tuple[int, int, list[str]]:
    info = folder.stat()
    return info.st_mode, info.st_gid, sorted(os.listdir(folder))


def their_policy(tmp_path: Path, nobody: int, state_dir: Path) -> tuple[Path, bytes]:
    """Where nobody's policy goes (a folder of theirs), and what it says: root's folder as its state_dir, shared
    with a group, and a metrics file written there."""
    folder = tmp_path / "theirs"
    folder.mkdir(mode=0o755)
    os.chown(folder, nobody, -1)
    text = yaml.safe_dump({
        "name": "planted", "database": {"engine": "sqlite", "path": "/nonexistent.sqlite3"},
        "targets": [{"name": "local", "kind": "local", "path": "/nonexistent-repo"}],
        "repository_password": {"file": "/root/none.pass"}, "state_dir": str(state_dir), "report_group": "nogroup",
        "metrics": {"textfile": str(state_dir / "planted.prom")}})
    return folder / "policy.yaml", text.encode()


def test_a_policy_served_through_a_fifo_is_not_read(tmp_path, nobody, victim):
    """Served by nobody, and gone once read: it must never pass for root's own and share root's folder."""
    fifo, text = their_policy(tmp_path, nobody, victim)
    os.mkfifo(fifo, 0o644)
    os.chown(fifo, nobody, -1)
    before = untouched(victim)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:  # no reader yet
                time.sleep(0.01)
                continue
            os.write(fd, text)
            os.close(fd)
            fifo.unlink()
            return

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    try:
        result = CliRunner().invoke(main, ["--policy", str(fifo), "status", "--offline"])
    finally:
        stop.set()
        server.join(5)
    assert result.exit_code == 2 and "not a regular file" in result.stderr, result.output
    assert untouched(victim) == before


@pytest.mark.parametrize("afterwards", ["unlinked", "replaced by a copy of root's"])
def test_a_policy_swapped_after_it_was_read_is_still_its_owners(tmp_path, nobody, victim, monkeypatch, afterwards):
    path, text = their_policy(tmp_path, nobody, victim)
    path.write_bytes(text)
    os.chown(path, nobody, -1)
    before = untouched(victim)
    parse = yaml.load

    def then_swapped(*args: Any, **kwargs: Any) -> Any:
        """Once read: the file goes, or a file of root's takes its place."""
        if path.exists() and path.stat().st_uid == nobody:
            if afterwards == "unlinked":
                path.unlink()
            else:
                copy = path.with_name("copy.yaml")
                copy.write_bytes(text)
                os.replace(copy, path)
        return parse(*args, **kwargs)

    monkeypatch.setattr(yaml, "load", then_swapped)
    result = CliRunner().invoke(main, ["--policy", str(path), "status", "--offline"])
    assert result.exit_code == 2 and f"{victim} is owned by root, not by nobody" in result.stderr, result.output
    assert untouched(victim) == before


def test_the_loader_gives_the_owner_of_the_file_it_read(tmp_path, nobody):
    path = policy_file(tmp_path)
    assert load_owned_policy(path, check_state_dir=False).owner == 0
    os.chown(path, nobody, -1)
    assert load_owned_policy(path, check_state_dir=False, read_only=True).owner == nobody
    link = tmp_path / "opsctl.yaml"
    link.symlink_to(path)  # root's own link: followed, as before; the file there is nobody's
    assert load_owned_policy(link, check_state_dir=False, read_only=True).owner == nobody


def test_a_state_dir_link_swapped_during_the_checks_is_never_shared(tmp_path, nobody, victim, monkeypatch):
    """nobody's policy names a link of theirs: to their own folder while it is checked, to root's folder after.
    A reader never shares, whatever the link says when."""
    theirs = tmp_path / "theirs"
    path, text = their_policy(tmp_path, nobody, theirs / "state")
    path.write_bytes(text)
    os.chown(path, nobody, -1)
    own = theirs / "own"
    own.mkdir(mode=0o700)
    os.chown(own, nobody, -1)
    link = theirs / "state"

    def point(to: Path) -> None:
        link.unlink(missing_ok=True)
        link.symlink_to(to)
        os.lchown(link, nobody, -1)

    point(victim)
    check = opsctl.policy.trust.check_state_dir_to_read

    def checked_while_theirs(folder: Path, owner: int) -> None:
        point(own)
        try:
            check(folder, owner)
        finally:
            point(victim)

    monkeypatch.setattr(opsctl.policy.trust, "check_state_dir_to_read", checked_while_theirs)
    before, theirs_before = untouched(victim), untouched(own)
    CliRunner().invoke(main, ["--policy", str(path), "status", "--offline"])
    assert untouched(victim) == before and untouched(own) == theirs_before


def _another_user(nobody: int) -> int:
    """A third user, neither root nor nobody."""
    uid = pwd.getpwnam("daemon").pw_uid
    assert uid not in (0, nobody)
    return uid


def _tree(root: Path) -> dict[Path, tuple[int, int, int, int, int]]:
    """What a write changes: each path's mode, owner, group, size and modification time."""
    return {p: (i.st_mode, i.st_uid, i.st_gid, i.st_size, i.st_mtime_ns)
            for p in [root, *root.rglob("*")] if (i := p.lstat())}
