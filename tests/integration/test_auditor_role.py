"""The auditor's path (issue 18, need-to-know): a member of report_group reads the status and nothing else.

As root (CI runs as root), a throwaway system user and group are made; root backs up a SQLite CRM
whose policy sets report_group to that group. Then, as that user, `opsctl status --offline`
answers from the run record, while the repository password, the audit trail and the database stay
unreadable to them, and their run writes nothing anywhere in the workspace.

The auditor's commands run in a forked child that becomes that user (setgroups, setresgid,
setresuid; the groups from /etc/group, as a login gives them), not through runuser: the test's
interpreter may live under /root, where another user cannot start it.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import sqlite3
import stat
import subprocess
import tempfile
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from opsctl.cli import main
from opsctl.targets.fleet_local import LocalFleet
from tests.conftest import require
from tests.support.workspace import Workspace


@dataclass(frozen=True)
class Auditor:
    user: str
    group: str
    uid: int
    gid: int  # the report group's


@pytest.fixture
def auditor() -> Iterator[Auditor]:
    """A system user in a new group of its own, both removed afterwards."""
    if os.geteuid() != 0:
        require(False, "root (the auditor test makes a user; CI runs it as root)")
    require(all(shutil.which(tool) for tool in ("groupadd", "useradd", "userdel", "groupdel")),
            "groupadd/useradd (passwd)")
    group = "opsaud" + uuid.uuid4().hex[:8]
    user = group + "-u"  # useradd gives the user a private group of that name; userdel removes it
    subprocess.run(["groupadd", "--system", group], check=True, capture_output=True)
    try:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "--groups", group,
                        user], check=True, capture_output=True)
        try:
            yield Auditor(user, group, pwd.getpwnam(user).pw_uid, grp.getgrnam(group).gr_gid)
        finally:
            subprocess.run(["userdel", user], check=True, capture_output=True)
    finally:
        subprocess.run(["groupdel", group], check=True, capture_output=True)


@pytest.fixture
def shared_workspace(restic_binary) -> Iterator[Workspace]:  # noqa: ARG001 (restic must be installed)
    """A workspace another user can pass into (pytest's own tmp folders are root's alone)."""
    root = Path(tempfile.mkdtemp(prefix="opsctl-auditor-", dir="/tmp"))
    root.chmod(0o755)
    try:
        yield Workspace(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def as_user(who: Auditor, work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """work() in a child process that has become the user (uid, gid and groups); its result, as JSON."""
    primary = pwd.getpwnam(who.user).pw_gid
    groups = os.getgrouplist(who.user, primary)
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never back into pytest
        code = 0
        try:
            os.close(reader)
            os.setgroups(groups)
            os.setresgid(primary, primary, primary)
            os.setresuid(who.uid, who.uid, who.uid)
            payload = json.dumps(work()).encode()
        except BaseException:  # noqa: BLE001 - whatever happened goes back to the test
            payload, code = json.dumps({"crashed": traceback.format_exc()}).encode(), 1
        with os.fdopen(writer, "wb") as out:
            out.write(payload)
        os._exit(code)
    os.close(writer)
    with os.fdopen(reader, "rb") as answer:
        data = answer.read()
    os.waitpid(pid, 0)
    result = json.loads(data)
    assert "crashed" not in result, result.get("crashed")
    return result


def tree(root: Path) -> dict[str, tuple[int, int, int, int]]:
    """Every file and folder under root: mode, owner, size, modification time (what a write would change)."""
    found = {}
    for path in [root, *root.rglob("*")]:
        info = path.lstat()
        found[str(path)] = (info.st_mode, info.st_uid, info.st_size, info.st_mtime_ns)
    return found


def mode_and_group(path: Path) -> tuple[str, int]:
    info = path.stat()
    return f"{stat.S_IMODE(info.st_mode):o}", info.st_gid


def backed_up(ws: Workspace, who: Auditor) -> Path:
    """Root's side: a private CRM, a policy the report group may read, a backup and a status."""
    with closing(sqlite3.connect(ws.root / "crm.sqlite3")) as conn, conn:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, email TEXT)")
        conn.executemany("INSERT INTO customers (email) VALUES (?)", [(f"c{i}@example.com",) for i in range(20)])
    (ws.root / "crm.sqlite3").chmod(0o600)
    policy = ws.write_policy({"engine": "sqlite", "path": "crm.sqlite3"}, report_group=who.group)
    os.chown(policy, 0, who.gid)
    policy.chmod(0o640)
    for command in (["init"], ["backup"]):
        result = ws.opsctl(*command)
        assert result.returncode == 0, result.output
    online = ws.opsctl("--json", "status")
    assert online.returncode in (0, 1, 3), online.output  # a verdict, not a refusal
    assert "status files" not in online.stderr and "members of" not in online.stderr, online.stderr  # all given
    return policy


def test_the_report_group_reads_status_offline_and_nothing_else(shared_workspace, auditor):
    ws = shared_workspace
    policy = backed_up(ws, auditor)
    state = ws.root / "state"
    assert mode_and_group(state) == ("710", auditor.gid)  # pass through, never list
    assert mode_and_group(state / "runs") == ("2750", auditor.gid)
    assert {mode_and_group(record) for record in (state / "runs").glob("*.json")} == {("640", auditor.gid)}
    assert mode_and_group(state / "audit.jsonl")[0] == "600" and mode_and_group(state / "tmp")[0] == "700"

    arguments = ["--policy", str(policy), "--json", "status", "--offline"]
    as_root = CliRunner().invoke(main, arguments)  # also loads, as root, every module the auditor's run needs
    expected = json.loads(as_root.stdout)
    before = tree(ws.root)

    def audit() -> dict[str, Any]:
        result = CliRunner().invoke(main, arguments)
        return {"code": result.exit_code, "stdout": result.stdout, "stderr": result.stderr,
                **{name: _reading(ws.root / name) for name in ("repository.pass", "state/audit.jsonl",
                                                              "crm.sqlite3", "state/runs/backup.json")},
                "listing": _listing(state)}

    seen = as_user(auditor, audit)
    assert seen["code"] in (0, 1, 3), seen
    document = json.loads(seen["stdout"])
    assert document["exit_code"] == seen["code"] == expected["exit_code"] and document["mode"] == "offline"
    assert [r["status"] for r in document["rules"]] == [r["status"] for r in expected["rules"]]
    local = document["targets"][0]
    assert local["snapshots"] == 1 and local["newest_snapshot_at"] == expected["targets"][0]["newest_snapshot_at"]
    assert "Traceback" not in seen["stderr"], seen["stderr"]
    assert seen["repository.pass"] == seen["state/audit.jsonl"] == seen["crm.sqlite3"] == "PermissionError"
    assert seen["state/runs/backup.json"] == "read" and seen["listing"] == "PermissionError"
    assert tree(ws.root) == before  # no record, no audit line, no metrics, no sweep: the auditor wrote nothing


def test_a_user_outside_the_report_group_is_told_how_to_be_let_in(shared_workspace, auditor):
    ws = shared_workspace
    policy = backed_up(ws, auditor)
    nobody = pwd.getpwnam("nobody")
    outsider = Auditor("nobody", "nogroup", nobody.pw_uid, nobody.pw_gid)

    def status() -> dict[str, Any]:
        result = CliRunner().invoke(main, ["--policy", str(policy), "status", "--offline"])
        return {"code": result.exit_code, "stderr": result.stderr}

    CliRunner().invoke(main, ["--policy", str(policy), "status", "--offline"])  # as root: the modules it needs
    seen = as_user(outsider, status)
    assert seen["code"] == 2 and f"policy file {policy} cannot be read by this user" in seen["stderr"], seen
    assert f"chgrp GROUP {policy} && chmod 640 {policy}" in seen["stderr"]  # how the owner lets them in
    policy.chmod(0o644)  # the policy readable by all: the run record still is not
    seen = as_user(outsider, status)
    assert seen["code"] == 2 and f"the run record {ws.root / 'state' / 'runs'} cannot be read" in seen["stderr"], seen
    assert "report_group: GROUP in the policy" in seen["stderr"]


def test_without_report_group_the_state_dir_is_private_again(shared_workspace, auditor):
    ws = shared_workspace
    backed_up(ws, auditor)
    ws.write_policy({"engine": "sqlite", "path": "crm.sqlite3"})  # report_group removed
    assert ws.opsctl("backup").returncode == 0
    assert mode_and_group(ws.root / "state")[0] == "700" and mode_and_group(ws.root / "state" / "runs")[0] == "700"
    assert mode_and_group(ws.root / "state" / "runs" / "backup.json")[0] == "600"  # rewritten by that backup


def test_a_report_group_that_cannot_be_used_takes_back_what_the_last_one_had(shared_workspace, auditor):
    """Mistyped, or gone (groupdel): the warning says the status files are root's alone again, and they are."""
    ws = shared_workspace
    backed_up(ws, auditor)
    ws.write_policy({"engine": "sqlite", "path": "crm.sqlite3"}, report_group="opsctl-no-such-group")
    result = ws.opsctl("backup")
    assert result.returncode == 0, result.output
    assert "report_group opsctl-no-such-group does not exist" in result.stderr
    assert "the status files are readable by root alone" in result.stderr
    state = ws.root / "state"
    assert mode_and_group(state) == ("700", 0) and mode_and_group(state / "runs") == ("700", 0)
    assert {mode_and_group(record) for record in (state / "runs").glob("*.json")} == {("600", 0)}


def _reading(path: Path) -> str:
    try:
        path.read_bytes()
    except OSError as exc:
        return exc.__class__.__name__
    return "read"


def _listing(folder: Path) -> str:
    try:
        os.listdir(folder)
    except OSError as exc:
        return exc.__class__.__name__
    return "listed"


def test_an_operator_whose_policy_root_owns_keeps_their_own_records(shared_workspace, auditor):
    """`chown root: FILE` is what opsctl advises for a policy: its non-root operator still owns their own state."""
    ws = shared_workspace
    state = ws.root / "opstate"
    policy = ws.write_policy({"engine": "sqlite", "path": "crm.sqlite3"}, name="own.yaml", state_dir=str(state))
    policy.chmod(0o644)
    arguments = ["--policy", str(policy), "status", "--offline"]
    CliRunner().invoke(main, arguments)  # as root: loads the modules the operator's run needs, and makes the state
    for path in [state, *state.rglob("*")]:
        os.chown(path, auditor.uid, -1)
    lines = len((state / "audit.jsonl").read_text().splitlines())

    def status() -> dict[str, Any]:
        result = CliRunner().invoke(main, arguments)
        return {"code": result.exit_code, "stderr": result.stderr}

    seen = as_user(auditor, status)
    assert seen["code"] in (0, 1, 3) and "Traceback" not in seen["stderr"], seen
    assert "could not record" not in seen["stderr"], seen["stderr"]
    assert len((state / "audit.jsonl").read_text().splitlines()) == lines + 1  # their run, in their own trail


def test_an_auditor_account_reads_the_fleet_with_a_policy_root_gave_it_and_writes_nothing(shared_workspace, auditor):
    """Root's policy (readable by all; its password file and state are root's alone) names a NAS folder the auditor may
    read: the auditor runs fleet status as themselves, needs no password, and records nothing (the trail is root's)."""
    ws = shared_workspace
    policy = ws.write_policy({"engine": "sqlite", "path": "crm.sqlite3"},
                             [{"name": "nas", "kind": "local", "path": str(ws.root / "nas" / "crm-eu")}])
    policy.chmod(0o644)
    (ws.root / "nas").mkdir()
    assert ws.opsctl("fleet", "status", "--target", "nas").returncode == 3  # no host yet; root's state is made
    nas = LocalFleet(ws.root / "nas", ws.root / "nas" / "fleet", "nas")
    nas.publish("crm-eu", "crm-eu-1", json.dumps({"format": "opsctl-fleet/1"}).encode())
    arguments = ["--policy", str(policy), "--json", "fleet", "status", "--target", "nas"]
    CliRunner().invoke(main, arguments)  # as root: loads every module the auditor's run needs
    before = tree(ws.root)

    def read() -> dict:
        result = CliRunner().invoke(main, arguments)
        return {"code": result.exit_code, "stdout": result.stdout, "stderr": result.stderr}

    seen = as_user(auditor, read)
    assert seen["code"] == 3, seen
    host = json.loads(seen["stdout"])["hosts"][0]
    assert (host["host"], host["state"]) == ("crm-eu-1", "invalid")
    assert tree(ws.root) == before  # no audit line, no run record: the state is root's

