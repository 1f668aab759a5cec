"""The trust rule (issue 15, threat 2): what another user could change or replace is refused, with the fix.

These tests give files away to `nobody`, so they need root (CI runs as root); elsewhere they skip.
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import opsctl.actions.context
from opsctl.audit import AuditEntry, append
from opsctl.cli import main
from opsctl.errors import PolicyInvalid
from opsctl.policy import load_policy
from opsctl.policy.fields import check_private_file
from opsctl.policy.load import state_dir_despite_errors
from opsctl.policy.trust import UntrustedFile, untrusted, untrusted_state_dir


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
