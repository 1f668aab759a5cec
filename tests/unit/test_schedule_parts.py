"""The schedule's parts that need no server: what the units may write, turns, and what the policy refuses."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from opsctl.actions.rotation import Rotation
from opsctl.actions.schedule_install import unit_spec
from opsctl.errors import PolicyInvalid
from opsctl.policy import load_policy
from opsctl.policy.notify import channel_problem
from opsctl.policy.schedule import check_parts
from opsctl.schedule.units import render


def policy_file(tmp_path: Path, **extra) -> Path:
    (tmp_path / "crm.sqlite3").write_bytes(b"")
    (tmp_path / "repo.pass").write_text("x\n")
    (tmp_path / "repo.pass").chmod(0o600)
    data = {"name": "crm", "database": {"engine": "sqlite", "path": "crm.sqlite3"},
            "targets": [{"name": "local", "kind": "local", "path": "repo"}],
            "repository_password": {"file": "repo.pass"}, "state_dir": "state", **extra}
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def service_of(tmp_path: Path, state_dir: Path) -> str:
    path = policy_file(tmp_path)
    policy = load_policy(path)
    return render(unit_spec(policy, path, state_dir, user=False))["opsctl-crm-backup.service"]


def test_a_state_folder_under_home_is_writable_and_home_is_not_hidden(tmp_path):
    home_state = Path("/home/backup/.local/state/opsctl/crm")
    service = service_of(tmp_path, home_state)
    assert f"ReadWritePaths={home_state}" in service
    assert "ProtectHome" not in service


def test_a_policy_outside_home_and_tmp_gets_the_whole_sandbox(tmp_path):
    service = service_of(tmp_path, Path("/var/lib/opsctl/crm"))
    assert "ProtectHome=yes" in service and "ReadWritePaths=/var/lib/opsctl/crm" in service
    assert f"ReadWritePaths=-{tmp_path / 'repo'}" in service  # a target folder may be a share not mounted yet
    under_tmp = Path("/tmp") in tmp_path.parents  # noqa: S108 - where pytest made this test's folder
    assert ("PrivateTmp=yes" in service) is not under_tmp  # a private /tmp would hide the policy's own files


def test_check_parts_follow_read_data_subset():
    assert (check_parts("5%"), check_parts("1/7"), check_parts("150%"), check_parts("500M")) == (20, 7, 1, None)


def test_a_check_part_advances_only_when_told_and_a_new_cycle_starts_over():
    turn = Rotation()
    assert turn.check_part("nas", 3) == 1
    turn = turn.after_check("nas", 3).after_check("nas", 3)
    assert turn.check_part("nas", 3) == 3 and turn.check_part("s3", 3) == 1
    assert turn.after_check("nas", 3).check_part("nas", 3) == 1  # wraps: every part read once per cycle
    assert turn.check_part("nas", 20) == 1  # read_data_subset changed: the parts mean something else now


@pytest.mark.parametrize(("schedule", "said"), [
    ({"backup": "daily 01:30"}, "*-*-* 01:30:00"),
    ({"backup": "30 1 * * *"}, "cron"),
    ({"check": 5}, "calendar expression"),
    ({"verify": "Mon-Fri 02:00"}, "Mon..Fri"),
])
def test_a_schedule_opsctl_cannot_read_is_refused_naming_the_field(tmp_path, schedule, said):
    with pytest.raises(PolicyInvalid) as refused:
        load_policy(policy_file(tmp_path, schedule=schedule))
    problems = " ".join(refused.value.problems)
    assert f"schedule.{next(iter(schedule))}" in problems and said in problems, problems


@pytest.mark.parametrize("name", ["Backup", "backup user", "1backup", "b" * 33, "root\nUser=x"])
def test_a_schedule_user_systemd_would_read_otherwise_is_refused_naming_the_field(tmp_path, name):
    with pytest.raises(PolicyInvalid) as refused:
        load_policy(policy_file(tmp_path, schedule={"user": name}))
    assert "At 'schedule.user'" in " ".join(refused.value.problems), refused.value.problems


def test_schedule_user_goes_to_system_units_only(tmp_path):
    path = policy_file(tmp_path, schedule={"user": "opsctl"})
    policy = load_policy(path)
    assert unit_spec(policy, path, tmp_path / "state", user=False).run_as == "opsctl"
    assert unit_spec(policy, path, tmp_path / "state", user=True).run_as is None  # install --user refuses it first


def test_off_in_yaml_turns_a_job_off_and_yes_still_means_true(tmp_path):
    path = policy_file(tmp_path)
    path.write_text(path.read_text() + "schedule: {drill: off, prune: never}\n")
    policy = load_policy(path)
    assert set(policy.schedule.jobs()) == {"backup", "check", "verify"}
    text = path.read_text().replace("kind: local", "kind: local\n  offsite: yes")
    path.write_text(text)
    assert load_policy(path).targets[0].offsite is True


@pytest.mark.parametrize(("channel", "said"), [
    ({"kind": "command", "argv": ["page-oncall"]}, "absolute path"),
    ({"kind": "webhook", "url": "file:///etc/passwd"}, "notify.channels"),
    ({"kind": "webhook", "url": "https://user:pw@hooks.example.com/x"}, "notify.channels"),
    ({"kind": "healthchecks", "url": "https://hc-ping.com/x", "on": ["failure"]}, "events"),
    ({"kind": "command", "argv": ["/bin/true"], "timeout": "2h"}, "timeout"),
])
def test_a_channel_that_cannot_work_is_refused_when_the_policy_is_read(tmp_path, channel, said):
    with pytest.raises(PolicyInvalid) as refused:
        load_policy(policy_file(tmp_path, notify={"channels": [channel]}))
    problems = " ".join(refused.value.problems)
    assert said in problems and "pw@" not in problems, problems


@pytest.mark.parametrize(("channel", "said"), [
    ({"kind": "command", "argv": ["/nonexistent/page"]}, "does not exist"),
    ({"kind": "healthchecks", "url_file": "hc.url"}, "can be read by other users"),
    ({"kind": "command", "argv": ["/bin/sh", "hook.sh"]}, "can be changed by other users"),
])
def test_a_channel_others_could_use_fails_when_sent_but_never_stops_the_backup(tmp_path, channel, said):
    (tmp_path / "hc.url").write_text("https://hc-ping.com/secret\n")
    (tmp_path / "hc.url").chmod(0o644)
    hook = tmp_path / "hook.sh"
    hook.write_text("#!/bin/sh\n")
    hook.chmod(0o777)  # a script handed to a trusted interpreter is code all the same
    if channel.get("argv", [""])[-1] == "hook.sh":
        channel = {**channel, "argv": ["/bin/sh", str(hook)]}
    policy = load_policy(policy_file(tmp_path, notify={"channels": [channel]}))  # the backup still runs
    problem = channel_problem(policy.notify.channels[0])
    assert problem is not None and said in problem and "secret" not in problem, problem
