"""The Ansible role (playbooks/roles/opsctl), run for real: the test venv's ansible-playbook on this machine, as
root, connection local, into a throwaway root prefix (opsctl_prefix), with a real SQLite CRM and real local, SFTP
(sshd) and S3 (moto) targets, and a backup user made by the role and removed afterwards.

- `--check --diff` on the new host writes nothing. The first run installs everything and ends with a passing
  `opsctl doctor`; a second run changes nothing.
- `--check --diff` after a changed variable reports the change and leaves every file as it was.
- The folders the role makes above the backup user's are root's (0755); a link planted in place of one of the
  user's folders, a changed repository password or a changed opsctl_user stop the play before it changes
  anything, saying what to do.
- opsctl_secret_files are written like the other secrets, and secret files no longer asked for are removed.
- An account the role did not make keeps its shell and home; the role's checks refuse what it cannot write.
- Secrets are files of the backup user, mode 0600, and no run's output (-vvv included) shows one.
- The units pass `systemd-analyze verify` and run the jobs as the backup user.
- `ansible-lint --profile production` passes, and the example inventory's three hosts give valid policies.

The prefix is a fresh 0755 folder under /var/tmp: pytest's own folders are root's alone (0700), and the
backup user must reach its files through them. Timings and recap lines are printed (pytest -s shows them).
"""

from __future__ import annotations

import grp
import hashlib
import json
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from opsctl.errors import PolicyInvalid
from opsctl.policy import load_policy
from tests.conftest import require
from tests.support import ansible
from tests.support.bank import make_bank

pytestmark = pytest.mark.ansible

POLICY = "crm-ansible"
YEARS = 10 * 365 * 86400  # scripts/test installed the packages: the role's apt task never runs apt-get update here


@dataclass(frozen=True)
class Host:
    """What the role is run on and with."""

    prefix: Path
    user: str
    crm: Path
    home: Path  # Ansible's folders, the inventory and the variables (the test's own, root's alone)
    secrets: dict[str, str]  # each secret value the role is given, by what it is

    @property
    def policy_file(self) -> Path:
        return self.prefix / "etc" / "opsctl" / f"{POLICY}.yaml"

    @property
    def unit_dir(self) -> Path:
        return self.prefix / "etc" / "systemd" / "system"

    @property
    def secrets_dir(self) -> Path:
        return self.prefix / "etc" / "opsctl" / POLICY

    @property
    def state_dir(self) -> Path:
        return self.prefix / "var" / "lib" / "opsctl" / POLICY

    @property
    def local_repository(self) -> Path:
        return self.prefix / "var" / "backups" / "opsctl" / "crm"

    def run(self, *args: str, variables: dict | None = None) -> ansible.PlaybookRun:
        extra = []
        if variables is not None:
            changed = self.home / f"changed-{uuid.uuid4().hex[:8]}.json"
            changed.write_text(json.dumps(variables))
            extra = ["-e", f"@{changed}"]
        return ansible.playbook(self.home, self.home / "inventory.yml", ansible.PLAYBOOKS / "site.yml",
                                "-e", f"@{self.home / 'variables.json'}", *extra, *args)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return ansible.build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture
def ansible_home(tmp_path, restic_binary) -> Path:  # noqa: ARG001 (opsctl runs restic)
    require(os.geteuid() == 0, "root (the role makes a system user and writes root's files; CI runs as root)")
    missing = ansible.tools_missing()
    require(not missing, ", ".join(missing))
    home = tmp_path / "ansible"
    home.mkdir()
    (home / "ansible.cfg").write_text("[defaults]\n")  # ANSIBLE_CONFIG: no other configuration applies
    return home


@dataclass(frozen=True)
class Places:
    home: Path  # Ansible's folders, the inventory and the variables: the test's own, root's alone
    prefix: Path  # the host's root for the role: a fresh 0755 folder the backup user can pass through


@pytest.fixture
def places(ansible_home) -> Iterator[Places]:
    prefix = Path(tempfile.mkdtemp(prefix="opsctl-ansible-", dir="/var/tmp"))
    prefix.chmod(0o755)
    try:
        yield Places(ansible_home, prefix)
    finally:
        shutil.rmtree(prefix, ignore_errors=True)


@dataclass(frozen=True)
class Accounts:
    user: str  # for the role to make
    crm_group: str  # the CRM's group: the role puts the user in it


@pytest.fixture
def accounts() -> Iterator[Accounts]:
    """A group for the CRM and a name for the backup user; both removed afterwards, whatever the test did."""
    group, user = "crmt" + uuid.uuid4().hex[:8], "opsctlt" + uuid.uuid4().hex[:8]
    subprocess.run(["groupadd", "--system", group], check=True, capture_output=True)
    try:
        yield Accounts(user, group)
    finally:
        subprocess.run(["userdel", user], check=False, capture_output=True)
        subprocess.run(["groupdel", user], check=False, capture_output=True)  # when userdel left it
        subprocess.run(["groupdel", group], check=False, capture_output=True)


@pytest.fixture
def host(places, accounts, wheel, ssh_server, moto_server) -> Host:
    prefix, backup_user, crm_group = places.prefix, accounts.user, accounts.crm_group
    crm = prefix / "srv" / "crm" / "crm.sqlite3"
    crm.parent.mkdir(parents=True)
    make_bank(crm)
    # As a CRM's files usually are: its group's, which the backup user joins (SQLite writes beside the file).
    for path in (crm.parent, *crm.parent.iterdir()):
        os.chown(path, 0, grp.getgrnam(crm_group).gr_gid)
        path.chmod(0o2770 if path.is_dir() else 0o660)
    secrets = {"repository password": "repo-" + uuid.uuid4().hex,
               "S3 access key id": "AKIA" + uuid.uuid4().hex[:16].upper(),
               "S3 secret key": uuid.uuid4().hex + uuid.uuid4().hex[:8],
               "SSH key": ssh_server.identity_file.read_text()}
    variables = {
        "opsctl_prefix": str(prefix), "opsctl_wheel": str(wheel), "opsctl_user": backup_user,
        "opsctl_user_groups": [crm_group], "opsctl_apt_cache_valid_time": YEARS, "opsctl_policy_name": POLICY,
        "opsctl_database": {"engine": "sqlite", "path": str(crm)},
        "opsctl_repository_password": secrets["repository password"],
        "opsctl_targets": [
            {"name": "local", "kind": "local", "path": "/var/backups/opsctl/crm"},
            {"name": "nas", "kind": "sftp", "host": ssh_server.host, "port": ssh_server.port, "user": ssh_server.user,
             "path": str(ssh_server.root / f"ansible-{uuid.uuid4().hex[:8]}")},
            {"name": "offsite", "kind": "s3", "offsite": True, "endpoint": moto_server.start().endpoint,
             "allow_plain_http": True, "bucket": f"crm-ansible-{uuid.uuid4().hex[:8]}", "prefix": "crm"}],
        "opsctl_target_secrets": {
            "nas": {"identity_key": secrets["SSH key"], "known_hosts": ssh_server.known_hosts.read_text()},
            "offsite": {"access_key_id": secrets["S3 access key id"],
                        "secret_access_key": secrets["S3 secret key"]}},
        "opsctl_schedule": {"backup": "hourly", "randomized_delay": "5m"},
        **({"opsctl_fleet": {"publish_to": ["offsite"], "host": "crm-ansible-test"}} if fleet_accepted(prefix) else {}),
    }
    (places.home / "variables.json").write_text(json.dumps(variables))  # in the test's 0700 folder, like a vault
    inventory = {"crm_backup": {"hosts": {"localhost": {"ansible_connection": "local",
                                                        "ansible_python_interpreter": ansible.HOST_PYTHON}}}}
    (places.home / "inventory.yml").write_text(yaml.safe_dump(inventory))
    ssh_server.reset()
    return Host(prefix, backup_user, crm, places.home, secrets)


def fleet_accepted(folder: Path) -> bool:
    """Whether this opsctl's policy takes a fleet: section (added alongside the role)."""
    scratch = Path(tempfile.mkdtemp(dir=folder))
    (scratch / "repo.pass").write_text("x\n")
    (scratch / "repo.pass").chmod(0o600)
    (scratch / "p.yaml").write_text(yaml.safe_dump({
        "name": "probe", "database": {"engine": "sqlite", "path": str(scratch / "x.sqlite3")},
        "targets": [{"name": "local", "kind": "local", "path": str(scratch / "repo")}],
        "repository_password": {"file": str(scratch / "repo.pass")}, "state_dir": str(scratch / "state"),
        "fleet": {"publish_to": ["local"], "host": "probe"}}))
    try:
        load_policy(scratch / "p.yaml", check_state_dir=False)
    except PolicyInvalid:
        return False
    finally:
        shutil.rmtree(scratch)
    return True


def report(label: str, run: ansible.PlaybookRun) -> None:
    print(f"\n{label}: {run.seconds:.1f} s\n  {run.recap}", flush=True)  # noqa: T201 - the closing note quotes these


def snapshot(host: Host) -> dict[str, str]:
    """The policy, every unit file and the state folder's files, each by its SHA-256 (a --check run must leave them
    byte for byte)."""
    files = [host.policy_file, *sorted(host.unit_dir.iterdir()),
             *sorted(p for p in host.state_dir.rglob("*") if p.is_file() and ".cache" not in p.parts)]
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_the_role_rolls_out_opsctl_once_then_changes_nothing_and_check_mode_writes_nothing(host):
    fresh = host.run("--check", "--diff")  # a host that has nothing yet: no opsctl, no user, no policy
    report("--check --diff on a new host", fresh)
    assert fresh.returncode == 0 and fresh.count("changed") > 0, fresh.output[-8000:]
    assert sorted(p.name for p in host.prefix.iterdir()) == ["srv"]  # the CRM, and nothing written beside it
    with pytest.raises(KeyError):
        pwd.getpwnam(host.user)

    first = host.run("-vvv", "--diff")
    report("first run (-vvv --diff)", first)
    assert first.returncode == 0, first.output[-8000:]
    assert first.count("changed") > 0 and first.count("failed") == 0
    assert first.task_result("Check everything a backup needs (opsctl doctor)").startswith("ok: [localhost]")
    _folders_above_the_users_are_roots(host)

    second = host.run("-v")
    report("second run (-v)", second)
    assert second.returncode == 0, second.output[-8000:]
    assert second.count("changed") == 0, second.output[-8000:]

    # A new schedule, and a unit edited by hand: check mode shows the policy's diff and opsctl's diff of the unit
    # (install --dry-run, of the policy on the host: the new schedule reaches the units in the real run), and
    # writes nothing: the policy, the units (the edit stays) and the state folder are as they were.
    timer = host.unit_dir / f"opsctl-{POLICY}-backup.timer"
    timer.write_text(timer.read_text().replace("Persistent=true", "Persistent=false"))
    before = snapshot(host)
    check = host.run("-v", "--check", "--diff", variables={"opsctl_schedule": {"backup": "*-*-* 02:00:00"}})
    report("--check --diff with a new backup schedule and a unit edited by hand", check)
    assert check.returncode == 0 and check.count("changed") == 2, check.output[-8000:]
    assert "+  backup: '*-*-* 02:00:00'" in check.output, check.output[-8000:]
    assert "-Persistent=false" in check.stdout and "+Persistent=true" in check.stdout, check.output[-8000:]
    assert snapshot(host) == before

    _secrets_are_the_backup_users_alone(host)
    _units_verify_and_run_as_the_backup_user(host)
    stopped = [_a_link_in_place_of_a_users_folder_stops_the_play(host),
               _a_changed_repository_password_stops_the_play(host),
               *_a_changed_user_stops_the_play_saying_how_to_migrate(host)]
    third = _secret_files_are_written_and_those_no_longer_asked_for_removed(host)
    for run in (fresh, first, second, check, *stopped, third):
        for what, value in host.secrets.items():
            for part in _parts(value):
                assert part not in run.output, f"the {what} appears in Ansible's output"


def _folders_above_the_users_are_roots(host: Host) -> None:
    """Only the user's own folders are the user's: what the role made above them is root's, 0755."""
    above = [host.prefix / "var", host.prefix / "var" / "lib", host.state_dir.parent, host.prefix / "var" / "backups",
             host.local_repository.parent, host.prefix / "etc", host.secrets_dir.parent]
    for folder in above:
        info = folder.stat()
        assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (0, 0, 0o755), folder
    account = pwd.getpwnam(host.user)
    for folder in (host.state_dir, host.local_repository, host.secrets_dir, host.secrets_dir / "files"):
        info = folder.stat()
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (account.pw_uid, 0o700), folder
    # The home of the user the role made is root's and shared by its policies, never one policy's state folder.
    assert (account.pw_dir, account.pw_shell) == (str(host.state_dir.parent), "/usr/sbin/nologin")


def _a_link_in_place_of_a_users_folder_stops_the_play(host: Host) -> ansible.PlaybookRun:
    """The backup user swaps its repository folder for a link to the unit folder: root must not chown through it."""
    moved = host.local_repository.with_name("crm.moved")
    host.local_repository.rename(moved)
    host.local_repository.symlink_to(host.unit_dir)
    try:
        run = host.run()
    finally:
        host.local_repository.unlink()
        moved.rename(host.local_repository)
    report("a link in place of the local repository folder", run)
    assert run.returncode != 0 and f"{host.local_repository} is a link" in run.stdout, run.output[-6000:]
    info = host.unit_dir.stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (0, 0, 0o755)
    assert all(p.stat().st_uid == 0 for p in host.unit_dir.iterdir())
    return run


def _a_changed_repository_password_stops_the_play(host: Host) -> ansible.PlaybookRun:
    """The password on the host is the repositories': a new one in the vault must not replace it."""
    password = host.secrets_dir / "repository.pass"
    before = password.read_bytes()
    new = "other-" + uuid.uuid4().hex
    run = host.run(variables={"opsctl_repository_password": new})
    report("a changed repository password", run)
    assert run.returncode != 0 and "opsctl_repository_password is not the password" in run.stdout, run.output[-6000:]
    assert "keys rotate" in run.stdout and new not in run.output
    assert hashlib.sha256(before).hexdigest() not in run.output
    assert password.read_bytes() == before
    return run


def _a_changed_user_stops_the_play_saying_how_to_migrate(host: Host) -> list[ansible.PlaybookRun]:
    """Another opsctl_user (not made yet): check mode says the same as the real run would, never "failed to look
    up user"; with opsctl_user_migrate the preview ends where the hand-over would begin."""
    other = {"opsctl_user": "opsctltz" + uuid.uuid4().hex[:8]}
    refused = host.run("--check", variables=other)
    report("--check with another opsctl_user", refused)
    assert refused.returncode != 0 and "did opsctl_user change?" in refused.stdout, refused.output[-6000:]
    assert "opsctl_user_migrate=true" in refused.stdout and "failed to look up" not in refused.output
    previewed = host.run("--check", variables={**other, "opsctl_user_migrate": True})
    assert previewed.returncode == 0 and "check mode cannot preview the rest" in previewed.stdout, \
        previewed.output[-6000:]
    return [refused, previewed]


def _secret_files_are_written_and_those_no_longer_asked_for_removed(host: Host) -> ansible.PlaybookRun:
    """A healthchecks URL from opsctl_secret_files, named by url_file; the role's files of a removed target go, and
    nothing else in its folders (opsctl's signing key, a file of someone else's name) is touched.

    The same run (for time) removes a wheel of an earlier opsctl, keeping the installed one; and it ends on a failing
    doctor: the local repository is emptied and init left out. The play then stops with doctor's problem and what
    to do, in the output without -v."""
    wheels = host.prefix / "opt" / "opsctl" / "wheels"
    (wheels / "opsctl-0.0.1-py3-none-any.whl").write_bytes(b"an earlier opsctl")
    account = pwd.getpwnam(host.user)
    stale = [host.secrets_dir / name for name in ("gone.s3.env", "gone.ssh-key", "files/old.url")]
    kept = host.secrets_dir / "notes.txt"
    for path in (*stale, kept):
        path.write_text("x\n")
        os.chown(path, account.pw_uid, account.pw_gid)
        path.chmod(0o600)
    moved = host.local_repository.with_name("crm.moved")
    host.local_repository.rename(moved)
    host.local_repository.mkdir(mode=0o700)
    os.chown(host.local_repository, account.pw_uid, account.pw_gid)
    url = f"http://127.0.0.1:9/ping/{uuid.uuid4()}"
    try:
        run = host.run("--diff", variables={
            "opsctl_init": False, "opsctl_secret_files": {"healthchecks.url": url + "\n"},
            "opsctl_notify": {"channels": [{"kind": "healthchecks",
                                            "url_file": "{{ opsctl_secret_files_dir }}/healthchecks.url"}]}})
    finally:
        host.local_repository.rmdir()
        moved.rename(host.local_repository)
    report("opsctl_secret_files, a healthchecks channel, and doctor failing", run)
    assert url.rsplit("/", 1)[1] not in run.output
    written = host.secrets_dir / "files" / "healthchecks.url"
    info = written.stat()
    assert (written.read_text(), info.st_uid, stat.S_IMODE(info.st_mode)) == (url + "\n", account.pw_uid, 0o600)
    channel = yaml.safe_load(host.policy_file.read_text())["notify"]["channels"][0]
    assert channel == {"kind": "healthchecks", "url_file": str(written)}
    assert not any(p.exists() for p in stale) and kept.exists() and (host.secrets_dir / "signing.key").exists()
    assert [p.name for p in wheels.iterdir()] == [json.loads((host.home / "variables.json").read_text())[
        "opsctl_wheel"].rsplit("/", 1)[1]]

    assert run.returncode != 0 and run.count("failed") == 1, run.output[-8000:]
    failure = run.stdout[run.stdout.index("TASK [opsctl : Stop when opsctl doctor found a problem"):]
    assert f"local (local {host.local_repository}), repository: no repository here yet; what to do: run: opsctl init" \
        in failure, failure
    return run


def _parts(secret: str) -> list[str]:
    """The secret, or for a key file each of its lines long enough to mean something (Ansible may re-wrap it)."""
    lines = [line for line in secret.splitlines() if len(line) >= 16 and "PRIVATE KEY" not in line]
    return lines or [secret]


def _secrets_are_the_backup_users_alone(host: Host) -> None:
    account = pwd.getpwnam(host.user)
    files = sorted(p.name for p in host.secrets_dir.iterdir())
    assert files == ["files", "nas.known_hosts", "nas.ssh-key", "offsite.s3.env", "repository.pass",
                     "signing.key"], files
    for path in host.secrets_dir.iterdir():
        if path.is_dir():
            continue  # files/, of opsctl_secret_files (_folders_above_the_users_are_roots)
        info = path.stat()
        assert (stat.S_IMODE(info.st_mode), info.st_uid) == (0o600, account.pw_uid), path
    folder = host.secrets_dir.stat()
    assert (stat.S_IMODE(folder.st_mode), folder.st_uid) == (0o700, account.pw_uid)
    policy = host.policy_file.stat()
    assert (stat.S_IMODE(policy.st_mode), policy.st_uid, policy.st_gid) == (0o640, 0, account.pw_gid)
    assert (host.secrets_dir / "repository.pass").read_text() == host.secrets["repository password"] + "\n"
    assert yaml.safe_load(host.policy_file.read_text())["schedule"]["user"] == host.user


def _units_verify_and_run_as_the_backup_user(host: Host) -> None:
    units = sorted(host.unit_dir.iterdir())
    assert [p.name for p in units] == [f"opsctl-{POLICY}-{job}" for job in (
        "backup.service", "backup.timer", "check.service", "check.timer", "drill.service", "drill.timer",
        "failed@.service", "prune.service", "prune.timer", "verify.service", "verify.timer")]
    services = [p for p in units if p.suffix == ".service"]
    assert all(f"\nUser={host.user}\n" in p.read_text() for p in services)
    # The units name the venv's opsctl in the prefix: it exists, so systemd-analyze checks the command line too.
    verify = subprocess.run(["systemd-analyze", "verify", *map(str, units)], capture_output=True, text=True,
                            check=False)
    assert verify.returncode == 0 and str(host.unit_dir) not in verify.stderr, verify.stderr


def _include_role_playbook(home: Path, tasks_from: str, hosts: dict[str, dict], *more: str) -> tuple[Path, Path]:
    """A playbook running files of the role's tasks (its defaults and vars loaded), and an inventory of local hosts,
    each with its own variables."""
    playbook = home / f"{tasks_from}-only.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": f"The role's {tasks_from}", "hosts": "all", "gather_facts": False,
        "tasks": [{"name": f"Run {name}", "ansible.builtin.include_role": {
            "name": str(ansible.PLAYBOOKS / "roles/opsctl"), "tasks_from": name, "public": True}}
            for name in (tasks_from, *more)]}]))
    inventory = home / f"{tasks_from}-hosts.yml"
    inventory.write_text(json.dumps({"all": {"hosts": {
        name: {"ansible_connection": "local", "ansible_python_interpreter": ansible.HOST_PYTHON, **variables}
        for name, variables in hosts.items()}}}))
    return playbook, inventory


def test_an_account_the_role_did_not_make_keeps_its_shell_and_home(ansible_home, accounts):
    """opsctl_user names an account that exists (postgres, a person's): the role only adds it to its groups."""
    name, home = accounts.user, f"/nonexistent/{accounts.user}"
    subprocess.run(["useradd", "--system", "--user-group", "--shell", "/bin/bash", "--home-dir", home,
                    "--no-create-home", name], check=True, capture_output=True)
    playbook, inventory = _include_role_playbook(ansible_home, "user.yml", {"localhost": {
        "opsctl_user": name, "opsctl_user_groups": [accounts.crm_group]}})
    done = ansible.playbook(ansible_home, inventory, playbook)
    assert done.returncode == 0, done.output[-6000:]
    account = pwd.getpwnam(name)
    assert (account.pw_shell, account.pw_dir) == ("/bin/bash", home)
    assert name in grp.getgrnam(accounts.crm_group).gr_mem


def test_opsctl_user_migrate_hands_the_folders_over_never_through_a_link(places, accounts):
    """The old user's folders (here daemon's), with a file and a link to root's file in them: the new user, made by
    the role, gets the folders and everything in them; the link is changed itself, never what it points to."""
    prefix, daemon = places.prefix, pwd.getpwnam("daemon")
    outside = prefix / "outside"
    outside.write_text("root's\n")
    folders = [prefix / "etc/opsctl/crm", prefix / "etc/opsctl/crm/files", prefix / "var/lib/opsctl/crm",
               prefix / "var/backups/opsctl/crm"]
    for folder in folders:
        folder.mkdir(parents=True)
        (folder / "data").write_text("x\n")
        os.chown(folder, daemon.pw_uid, daemon.pw_gid)
        os.chown(folder / "data", daemon.pw_uid, daemon.pw_gid)
    (folders[2] / "link").symlink_to(outside)
    os.lchown(folders[2] / "link", daemon.pw_uid, daemon.pw_gid)
    variables = {"opsctl_prefix": str(prefix), "opsctl_user": accounts.user, "opsctl_repository_password": "x" * 16,
                 "opsctl_targets": [{"name": "local", "kind": "local", "path": "/var/backups/opsctl/crm"}]}
    playbook, inventory = _include_role_playbook(places.home, "preflight.yml", {"localhost": variables}, "user.yml")
    refused = ansible.playbook(places.home, inventory, playbook)
    assert refused.returncode != 0 and "did opsctl_user change?" in refused.stdout, refused.output[-6000:]
    done = ansible.playbook(places.home, inventory, playbook, "-e", "opsctl_user_migrate=true")
    assert done.returncode == 0, done.output[-6000:]
    account = pwd.getpwnam(accounts.user)
    for path in (*folders, *(f / "data" for f in folders), folders[2] / "link"):
        assert (path.lstat().st_uid, path.lstat().st_gid) == (account.pw_uid, account.pw_gid), path
    assert (outside.stat().st_uid, outside.stat().st_gid) == (0, 0)


def test_the_role_refuses_variables_it_cannot_write_safely(ansible_home):
    """A path on two lines (it would add keys to the policy), opsctl_policy_extra setting the role's own keys, a
    healthchecks URL in the policy: each stops the play with what to change; a sound host passes."""
    sound = {"opsctl_wheel": "/srv/opsctl.whl", "opsctl_repository_password": "x" * 16,
             "opsctl_database": {"engine": "sqlite", "path": "/srv/crm/crm.sqlite3"},
             "opsctl_targets": [{"name": "local", "kind": "local", "path": "/var/backups/opsctl/crm"}]}
    hosts = {"sound": {},
             "two-lines": {"opsctl_config_dir": "/etc/opsctl\nstate_dir: /srv/elsewhere"},
             "prefix-newline": {"opsctl_prefix": "/srv/stage\n"},
             "owned-keys": {"opsctl_policy_extra": {"compression": "max", "state_dir": "/srv/x", "schedule": {}}},
             "healthchecks-url": {"opsctl_notify": {"channels": [{"kind": "healthchecks",
                                                                   "url": "https://hc-ping.com/a-token"}]}}}
    playbook, inventory = _include_role_playbook(ansible_home, "assert.yml", {
        name: {**sound, **variables} for name, variables in hosts.items()})
    done = ansible.playbook(ansible_home, inventory, playbook)
    failed = {line.split("]", 1)[0].split("[", 1)[1]: line for line in done.stdout.splitlines()
              if line.startswith(("fatal: [", "failed: ["))}
    assert sorted(failed) == sorted(set(hosts) - {"sound"}), done.output[-6000:]
    assert "opsctl_config_dir must be an absolute path on one line" in failed["two-lines"]
    assert "opsctl_prefix" in failed["prefix-newline"]
    assert "opsctl_policy_extra may not set schedule, state_dir:" in failed["owned-keys"]
    assert "a healthchecks channel's url is its credential" in failed["healthchecks-url"]


def test_ansible_lint_passes_with_the_production_profile(ansible_home):
    done = ansible.lint(ansible_home)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_example_inventory_gives_three_valid_policies(ansible_home):
    """The example's hosts (PostgreSQL, MariaDB, SQLite) rendered by the role's own template, then validated."""
    out = ansible_home / "rendered"
    playbook = ansible_home / "render.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": "Render the policies of the example inventory", "hosts": "crm_backup", "gather_facts": False,
        "connection": "local",
        "tasks": [
            # The role's own checks of its variables; public: its defaults and vars for the template below.
            {"name": "Check", "ansible.builtin.include_role": {"name": str(ansible.PLAYBOOKS / "roles/opsctl"),
                                                                "tasks_from": "assert.yml", "public": True}},
            {"name": "Render", "ansible.builtin.template": {
                "src": str(ansible.PLAYBOOKS / "roles/opsctl/templates/policy.yaml.j2"),
                "dest": f"{out}/{{{{ inventory_hostname_short }}}}.yaml", "mode": "0600"}}]}]))
    out.mkdir()
    done = ansible.playbook(ansible_home, ansible.PLAYBOOKS / "inventory/example/hosts.yml", playbook,
                            "-e", f"opsctl_prefix={out}", "-e", f"ansible_python_interpreter={ansible.HOST_PYTHON}")
    assert done.returncode == 0, done.output[-6000:]
    engines = {}
    for name in ("crm-pg", "crm-maria", "crm-lite"):
        policy = yaml.safe_load((out / f"{name}.yaml").read_text())
        engines[name] = policy["database"]["engine"]
        _fake_secret_files(policy)
        checked = subprocess.run([str(ansible.BIN / "opsctl"), "--policy", str(out / f"{name}.yaml"), "policy",
                                  "validate"], capture_output=True, text=True, check=False)
        assert checked.returncode == 0, checked.stdout + checked.stderr
    assert engines == {"crm-pg": "postgresql", "crm-maria": "mysql", "crm-lite": "sqlite"}
    assert policy["notify"]["channels"] == [{"kind": "healthchecks",
                                            "url_file": f"{out}/etc/opsctl/crm-lite/files/healthchecks.url"}]


def _fake_secret_files(policy: dict) -> None:
    """The files the policy names, as the role would write them (validate checks their owner and mode)."""
    named = [policy["repository_password"]["file"], policy["database"].get("password", {}).get("file")]
    for target in policy["targets"]:
        named += [target.get("identity_file"), target.get("known_hosts"), target.get("credentials", {}).get("file")]
    for channel in policy.get("notify", {}).get("channels", []):
        named += [channel.get("url_file"), channel.get("secret_file")]
    for name in filter(None, named):
        path = Path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.parent.chmod(0o700)
        path.write_text("AWS_ACCESS_KEY_ID=x\nAWS_SECRET_ACCESS_KEY=y\n" if name.endswith(".env")
                        else "https://hc-ping.com/x\n" if name.endswith(".url") else "x\n")
        path.chmod(0o600)
