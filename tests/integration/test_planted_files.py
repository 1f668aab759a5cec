"""Planted configuration (issue 15, threat 2): a root opsctl acts on nothing another user could have written.

Each test plants one file (owned by `nobody`, or writable by others, or in a folder others can
write) and runs the installed `opsctl` as root: exit 2, the file named, the fixing command given,
and nothing run, no repository made, no backup taken. A correctly owned file still works.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.bank import make_bank
from tests.support.workspace import Result, Workspace


@pytest.fixture
def nobody() -> int:
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("the planted-file tests run opsctl as root: CI runs them as root")
        pytest.skip("planting a file owned by another user needs root")
    return pwd.getpwnam("nobody").pw_uid


@pytest.fixture
def crm(workspace: Workspace) -> Workspace:
    """A working SQLite policy (0644, owned by root) whose password comes from a 0600 file."""
    make_bank(workspace.root / "bank.sqlite3")
    workspace.write_policy({"engine": "sqlite", "path": "bank.sqlite3"}, lock_wait="1s")
    return workspace


def opsctl(cwd: Path, *args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> Result:
    """The installed command, as an operator types it in `cwd` (no --policy unless given)."""
    binary = Path(sys.executable).with_name("opsctl")
    full_env = {**os.environ, "XDG_CACHE_HOME": str(cwd / ".cache"), **(env or {})}
    if "OPSCTL_POLICY" not in (env or {}):
        full_env.pop("OPSCTL_POLICY", None)
    proc = subprocess.run([str(binary) if binary.exists() else "opsctl", *args], cwd=cwd, env=full_env,
                          input=stdin, capture_output=True, text=True, timeout=300, check=False,
                          stdin=None if stdin is not None else subprocess.DEVNULL)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def planted_policy(folder: Path, marker: Path, **extra: object) -> Path:
    """A policy whose repository password comes from a command that leaves `marker` behind if it ever runs."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "opsctl.yaml"
    path.write_text(yaml.safe_dump({
        "name": "crm-planted", "database": {"engine": "sqlite", "path": str(folder.parent / "bank.sqlite3")},
        "targets": [{"name": "local", "kind": "local", "path": str(folder / "repo-planted")}],
        "repository_password": {"command": ["sh", "-c", f"touch {marker}; echo planted-password"]},
        "state_dir": str(folder / "state"), **extra}))
    return path


def assert_refused(result: Result, *expected: str) -> None:
    assert result.returncode == 2, result.output
    for text in expected:
        assert text in result.stderr, result.stderr
    assert "Traceback" not in result.output


def assert_nothing_ran(folder: Path, marker: Path) -> None:
    assert not marker.exists(), "the planted policy's command ran"
    assert not (folder / "repo-planted").exists(), "a repository was made for the planted policy"


def test_a_policy_planted_in_the_current_folder_is_refused_and_its_command_never_runs(crm, nobody):
    here = crm.root / "cwd"
    marker = crm.root / "command-ran"
    path = planted_policy(here, marker)
    os.chown(path, nobody, -1)
    for command in (("backup",), ("init",), ("keys", "rotate"), ("policy", "validate")):
        assert_refused(opsctl(here, *command), "the policy file: opsctl.yaml is owned by nobody",
                       "run: chown root: opsctl.yaml")
        assert_nothing_ran(here, marker)
    assert not (here / "state").exists(), "the planted policy chose where root writes"


def test_a_policy_others_can_write_is_refused_from_every_source(crm, nobody):  # noqa: ARG001 - runs as root
    here = crm.root / "cwd"
    marker = crm.root / "command-ran"
    path = planted_policy(here, marker)
    path.chmod(0o666)
    for args, env in (((), None), (("--policy", str(path)), None), ((), {"OPSCTL_POLICY": str(path)})):
        result = opsctl(here, *args, "backup", env=env)
        assert_refused(result, "can be changed by other users (mode 666)", "run: chmod go-w ")
        assert_nothing_ran(here, marker)


def test_a_policy_in_a_folder_others_can_write_is_refused(crm, nobody):  # noqa: ARG001 - runs as root
    shared = crm.root / "shared"
    marker = crm.root / "command-ran"
    planted_policy(shared, marker)
    shared.chmod(0o777)
    result = opsctl(crm.root, "--json", "--policy", "shared/opsctl.yaml", "backup")
    assert_refused(result, f"the folder {shared} can be changed by other users (mode 777)",
                   f"run: chmod go-w {shared}")
    assert json.loads(result.stdout)["exit_code"] == 2
    assert_nothing_ran(shared, marker)


def test_a_planted_password_file_is_refused_before_restic_starts(crm, nobody):
    os.chown(crm.root / "repository.pass", nobody, -1)
    result = crm.opsctl("backup")
    assert_refused(result, f"{crm.root / 'repository.pass'} is owned by uid {nobody}",
                   f"run: chown root: {crm.root / 'repository.pass'}")
    assert not (crm.root / "repo-local").exists()


def test_a_password_file_in_a_folder_others_can_write_is_refused(crm, nobody):  # noqa: ARG001 - runs as root
    secrets = crm.root / "secrets"
    secrets.mkdir()
    shutil.move(crm.root / "repository.pass", secrets / "repository.pass")
    crm.write_policy({"engine": "sqlite", "path": "bank.sqlite3"},
                     repository_password={"file": "secrets/repository.pass"})
    secrets.chmod(0o777)
    result = crm.opsctl("init")
    assert_refused(result, "At 'repository_password'", f"run: chmod go-w {secrets}")
    assert not (crm.root / "repo-local").exists()


def test_a_state_dir_owned_by_another_user_is_refused_and_left_untouched(crm, nobody):
    state = crm.root / "state"
    state.mkdir(mode=0o700)
    os.chown(state, nobody, -1)
    result = crm.opsctl("backup")
    assert_refused(result, f"the state_dir: the folder {state} is owned by nobody",
                   f"run: chown -R root: {state} && chmod 700 {state}")
    assert list(state.iterdir()) == [], "opsctl wrote into another user's folder"
    assert not (crm.root / "repo-local").exists()
    state.chmod(0o777)
    os.chown(state, 0, -1)
    assert_refused(crm.opsctl("backup"), "can be changed by other users (mode 777)", f"run: chmod 700 {state}")
    assert list(state.iterdir()) == []


def test_a_planted_ssh_key_or_known_hosts_is_refused(crm, nobody):
    key, hosts = crm.root / "id_ed25519", crm.root / "known_hosts"
    key.write_text("not a key\n")
    key.chmod(0o600)
    hosts.write_text("nas.example.test ssh-ed25519 AAAA\n")
    os.chown(key, nobody, -1)
    hosts.chmod(0o666)
    crm.write_policy({"engine": "sqlite", "path": "bank.sqlite3"},
                     [{"name": "nas", "kind": "sftp", "host": "127.0.0.1", "port": 1, "user": "backup",
                       "path": "/crm", "identity_file": "id_ed25519", "known_hosts": "known_hosts"}])
    result = crm.opsctl("backup")
    assert_refused(result, "At 'targets[0].identity_file'", f"run: chown root: {key}",
                   "At 'targets[0].known_hosts'", f"run: chmod go-w {hosts}")


def test_correctly_owned_files_still_work(crm, nobody):  # noqa: ARG001 - runs as root
    """0644 policy, 0600 password, opsctl's own 0700 state folder: as before."""
    assert (crm.root / "policy.yaml").stat().st_mode & 0o777 == 0o644
    for command in (("init",), ("backup",)):
        result = crm.opsctl(*command)
        assert result.returncode == 0, result.output
    assert (crm.root / "state").stat().st_mode & 0o777 == 0o700
    piped = opsctl(crm.root, "--policy", "/dev/stdin", "policy", "validate",
                   stdin=(crm.root / "policy.yaml").read_text().replace("repository.pass",
                                                                        str(crm.root / "repository.pass")))
    assert "the policy file" not in piped.stderr, piped.output  # standard input is the caller's own
