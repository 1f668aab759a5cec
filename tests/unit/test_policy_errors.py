"""Malformed policies: exit 2, every problem named by its field, never a traceback."""

from __future__ import annotations

import os

import pytest
import yaml
from click.testing import CliRunner

from opsctl.cli import main

GOOD = {
    "name": "crm-prod",
    "database": {"engine": "postgresql", "host": "127.0.0.1", "user": "backup", "name": "crm"},
    "targets": [{"name": "local", "kind": "local", "path": "repo"}],
    "repository_password": {"file": "repo.pass"},
}


def run(tmp_path, policy, *, raw: str | None = None, secret_mode: int = 0o600):
    secret = tmp_path / "repo.pass"
    secret.write_text("s3cret\n")
    secret.chmod(secret_mode)
    path = tmp_path / "policy.yaml"
    path.write_text(raw if raw is not None else yaml.safe_dump(policy))
    return CliRunner().invoke(main, ["--policy", str(path), "policy", "validate"])


def with_changes(**changes) -> dict:
    policy = yaml.safe_load(yaml.safe_dump(GOOD))
    for dotted, value in changes.items():
        node = policy
        *parents, last = dotted.split("__")
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        if value is DELETE:
            del node[last]
        else:
            node[last] = value
    return policy


DELETE = object()

CASES = [
    ("unknown top-level key", with_changes(retension={"keep_daily": 7}),
     "At 'retension': unknown key 'retension'; did you mean 'retention'?"),
    ("unknown nested key", with_changes(database__prot=5432),
     "At 'database.prot': unknown key 'prot'; did you mean 'port'?"),
    ("wrong type", with_changes(database__port="five"), "At 'database.port': Input should be a valid integer"),
    ("port out of range", with_changes(database__port=70000), "At 'database.port'"),
    ("missing field", with_changes(targets=[{"name": "local", "kind": "local"}]),
     "At 'targets[0].path': required field is missing"),
    ("missing top-level", with_changes(repository_password=DELETE),
     "At 'repository_password': required field is missing"),
    ("unknown engine", with_changes(database__engine="postgres"), "did you mean 'postgresql'?"),
    ("unknown target kind", with_changes(targets=[{"name": "x", "kind": "ftp", "path": "/x"}]),
     "At 'targets[0]': kind 'ftp' is not one of"),
    ("duplicate target names", with_changes(targets=[{"name": "a", "kind": "local", "path": "r1"},
                                                     {"name": "a", "kind": "local", "path": "r2"}]),
     "two targets are named 'a'"),
    ("two targets in one folder", with_changes(targets=[{"name": "a", "kind": "local", "path": "r1"},
                                                        {"name": "b", "kind": "local", "path": "./r1/"}]),
     "targets a and b use the same folder"),
    ("password inline", with_changes(repository_password="hunter2"),
     "At 'repository_password': write where the password comes from"),
    ("two password sources", with_changes(repository_password={"file": "repo.pass", "env": "X"}),
     "give exactly one of file, env or command"),
    ("bad duration", with_changes(objectives={"rpo": "one day"}), "At 'objectives.rpo': 'one day' is not a duration"),
    ("bad policy name", with_changes(name="crm prod,eu"), "At 'name': not a valid name"),
    ("empty targets", with_changes(targets=[]), "At 'targets': Tuple should have at least 1 item"),
    ("retention with no rule", with_changes(retention={}), "At 'retention': set at least one keep_* rule"),
    ("missing password file", with_changes(repository_password={"file": "nope.pass"}), "nope.pass does not exist"),
]


@pytest.mark.parametrize(("policy", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_policy_exits_2_and_names_the_field(tmp_path, policy, expected):
    result = run(tmp_path, policy)
    assert result.exit_code == 2, result.output
    assert expected in result.stderr
    assert "Traceback" not in result.output


def test_world_readable_password_file_is_refused(tmp_path):
    result = run(tmp_path, GOOD, secret_mode=0o644)
    assert result.exit_code == 2
    assert "At 'repository_password': " in result.stderr
    assert "can be read by other users (mode 644); run: chmod 600" in result.stderr
    assert "s3cret" not in result.output


def test_every_problem_is_reported_in_one_pass(tmp_path):
    policy = with_changes(retension={}, database__port="x", targets=[{"name": "l", "kind": "local"}])
    result = run(tmp_path, policy)
    assert result.exit_code == 2
    assert "3 problems found" in result.stderr
    for field in ("'retension'", "'database.port'", "'targets[0].path'"):
        assert field in result.stderr


def test_yaml_syntax_error_names_the_line(tmp_path):
    result = run(tmp_path, None, raw="name: crm\ntargets: [\n  - oops\n")
    assert result.exit_code == 2
    assert "line " in result.stderr and "YAML syntax" in result.stderr


def test_duplicate_yaml_key_is_refused(tmp_path):
    result = run(tmp_path, None, raw="name: a\nname: b\n")
    assert result.exit_code == 2
    assert "the key 'name' is given twice" in result.stderr


def test_missing_policy_file(tmp_path):
    result = CliRunner().invoke(main, ["--policy", str(tmp_path / "absent.yaml"), "policy", "validate"])
    assert result.exit_code == 2
    assert "absent.yaml not found" in result.stderr


def test_relative_paths_resolve_against_the_policy_folder(tmp_path, monkeypatch):
    monkeypatch.chdir("/")
    result = run(tmp_path, GOOD)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("OK: ")
    from opsctl.policy import load_policy
    policy = load_policy(tmp_path / "policy.yaml")
    assert policy.targets[0].path == tmp_path / "repo"
    assert policy.repository_password.file == tmp_path / "repo.pass"


def test_sftp_key_paths_restic_cannot_pass_are_refused_by_name(tmp_path):
    policy = with_changes(targets=[{"name": "nas", "kind": "sftp", "host": "nas.example.test", "user": "backup",
                                    "path": "/volume1/crm", "identity_file": "keys/my key",
                                    "known_hosts": "known_hosts"}])
    result = run(tmp_path, policy)
    assert result.exit_code == 2
    assert "At 'targets[0].identity_file'" in result.stderr
    assert "no spaces, quotes or backslashes" in result.stderr


def test_s3_credentials_need_exactly_one_source(tmp_path):
    policy = with_changes(targets=[{"name": "cloud", "kind": "s3", "endpoint": "https://s3.example.test",
                                    "bucket": "crm-backups", "credentials": {}}])
    result = run(tmp_path, policy)
    assert result.exit_code == 2
    assert "At 'targets[0].credentials'" in result.stderr and "exactly one of file" in result.stderr


def test_unset_password_variable_is_named_when_the_password_is_needed(tmp_path):
    os.environ.pop("OPSCTL_TEST_UNSET", None)
    policy = with_changes(repository_password={"env": "OPSCTL_TEST_UNSET"})
    assert run(tmp_path, policy).exit_code == 0  # validation cannot know the runtime environment
    result = CliRunner().invoke(main, ["--policy", str(tmp_path / "policy.yaml"), "snapshots"])
    assert result.exit_code == 2
    assert "environment variable OPSCTL_TEST_UNSET, which is not set" in result.stderr
