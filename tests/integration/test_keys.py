"""Key rotation for real: restic repositories on local disks, a NAS over SFTP and S3, killed at every step."""

from __future__ import annotations

import fcntl
import json
import sqlite3
import stat
import subprocess
import time
from contextlib import closing

import pytest

from tests.integration.test_no_secrets_leak import ProcScanner
from tests.support.bank import ACCOUNTS, TOTAL, make_bank
from tests.support.targets import local_target, s3_target, sftp_target

NEW_PASSWORD = "rotated-" + "5f3c9a1e" * 4

# Every journaled step of a rotation over targets a (repository) and b (its replica); "+" kills
# right after the step's action, before the journal records that it is done.
STEPS = ["stage", "stage+", "add:a", "add:a+", "add:b", "add:b+", "switch", "switch+",
         "remove:a", "remove:a+", "remove:b", "remove:b+", "finish"]


def sqlite_policy(ws, targets, **extra):
    make_bank(ws.root / "bank.sqlite3")
    ws.write_policy({"engine": "sqlite", "path": "bank.sqlite3"}, targets, lock_wait="3s", **extra)


def initialised(ws, targets, **extra):
    sqlite_policy(ws, targets, **extra)
    for command in (("init",), ("backup",)):
        result = ws.opsctl(*command)
        assert result.returncode == 0, result.output
    return ws


def opens(ws, folder: str, password_file) -> bool:
    """Whether restic opens a local repository with the password in that file (checked outside opsctl)."""
    if password_file is None or not password_file.exists():
        return False
    proc = subprocess.run(["restic", "--repo", str(ws.root / folder), "--password-file", str(password_file),
                           "cat", "config"], capture_output=True, text=True, timeout=60, check=False)
    return proc.returncode == 0


def key_ids(ws, folder: str) -> set[str]:
    return {p.name for p in (ws.root / folder / "keys").iterdir()}


def old_secret(ws):
    found = sorted(ws.root.glob("repository.pass.*.old"))
    return found[-1] if found else None


def journal(ws):
    path = ws.root / "state" / "keys-rotation.json"
    return json.loads(path.read_text()) if path.exists() else None


def opens_with_old(ws, target: str) -> bool:
    """Through opsctl, so SFTP and S3 are opened the way backups open them: a policy naming the old secret."""
    ws.write_policy({"engine": "sqlite", "path": "bank.sqlite3"}, json.loads((ws.root / "targets.json").read_text()),
                    name="old.yaml", repository_password={"file": old_secret(ws).name})
    result = ws.opsctl("snapshots", "--target", target, policy="old.yaml")
    assert result.returncode == 0 or "does not open" in result.output, result.output
    return result.returncode == 0


def test_full_rotation_on_local_sftp_and_s3(workspace, sftp_endpoint, s3_endpoint):
    ws = workspace
    targets = [local_target(), sftp_target(sftp_endpoint), s3_target(s3_endpoint, ws)]
    (ws.root / "targets.json").write_text(json.dumps(targets))
    initialised(ws, targets)
    old_password = ws.repository_password
    ws.secret("new.pass", NEW_PASSWORD)
    scanner = ProcScanner([old_password.encode(), NEW_PASSWORD.encode()])
    scanner.start()
    try:
        result = ws.opsctl("--verbose", "keys", "rotate", "--new-password-file", "new.pass")
    finally:
        scanner.stop.set()
        scanner.join()
    assert result.returncode == 0, result.output
    assert "restic" in scanner.processes_seen and scanner.hits == [], scanner.hits
    for text in (result.output, "\n".join(ws.audit_lines())):
        assert old_password not in text and NEW_PASSWORD not in text

    assert (ws.root / "repository.pass").read_text().strip() == NEW_PASSWORD
    backup = old_secret(ws)
    assert backup.read_text().strip() == old_password
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert journal(ws) is None and not (ws.root / "repository.pass.staged").exists()
    for target in ("local", "nas", "offsite"):
        assert not opens_with_old(ws, target), target
    # One key per repository, the same file on every replica.
    statuses = json.loads(ws.opsctl("keys", "status", "--json").stdout)["targets"]
    assert [len(row["keys"]) for row in statuses] == [1, 1, 1]
    assert len({row["keys"][0]["id"] for row in statuses}) == 1
    assert all(row["warnings"] == [] for row in statuses), statuses

    record = [e for e in map(json.loads, ws.audit_lines()) if e["command"] == "keys rotate"][-1]
    assert record["command"] == "keys rotate" and record["outcome"] == "ok"
    assert {t["removed"] for t in record["details"]["targets"].values()} == {True}
    again = ws.opsctl("backup")
    assert again.returncode == 0, again.output
    restored = ws.opsctl("restore", "--yes", "--target", "offsite", "--to", "restored/offsite.sqlite3")
    assert restored.returncode == 0, restored.output
    with closing(sqlite3.connect(ws.root / "restored" / "offsite.sqlite3")) as conn:
        assert conn.execute("SELECT count(*), sum(balance) FROM accounts").fetchone() == (ACCOUNTS, TOTAL)


def test_sigkill_at_every_step_then_resume(workspace):
    """Each step is killed once (a real SIGKILL); the run that resumes it is killed at the next one."""
    ws = initialised(workspace, [local_target("a"), local_target("b")])
    old_password = ws.repository_password
    current, staged = ws.root / "repository.pass", ws.root / "repository.pass.staged"
    command = ("keys", "rotate")
    for step in STEPS:
        result = ws.opsctl(*command, env={"OPSCTL_TEST_KILL_AT": step})
        assert result.returncode == -9, f"{step}: {result.output}"
        assert journal(ws)["step"] == step.rstrip("+")
        for folder in ("repo-a", "repo-b"):
            # The policy's password opens every repository at every step; the staged one opens those it reached.
            assert opens(ws, folder, current), f"{folder} after a kill at {step}"
        text = (ws.root / "state" / "keys-rotation.json").read_text()
        assert old_password not in text and (not staged.exists() or staged.read_text().strip() not in text)
        if step == "stage":
            rolled = ws.opsctl("keys", "rotate", "--resume")
            assert rolled.returncode == 1 and "rolled back" in rolled.output, rolled.output
            assert journal(ws) is None and len(key_ids(ws, "repo-a")) == 1
            continue
        command = ("keys", "rotate", "--resume")
    finished = ws.opsctl(*command)
    assert finished.returncode == 0, finished.output
    assert journal(ws) is None
    new_password = current.read_text().strip()
    assert new_password != old_password and old_secret(ws).read_text().strip() == old_password
    for folder in ("repo-a", "repo-b"):
        assert opens(ws, folder, current) and not opens(ws, folder, old_secret(ws))
        assert key_ids(ws, folder) == key_ids(ws, "repo-a") and len(key_ids(ws, folder)) == 1
    audit = "\n".join(ws.audit_lines())
    assert old_password not in audit and new_password not in audit
    assert ws.opsctl("backup").returncode == 0


def test_a_target_added_mid_rotation_joins_it_before_the_switch(workspace):
    """Without this, the switch would leave the new target with only the old key: locked out of the policy."""
    ws = initialised(workspace, [local_target("a"), local_target("b")])
    assert ws.opsctl("keys", "rotate", env={"OPSCTL_TEST_KILL_AT": "add:a+"}).returncode == -9
    ws.write_policy({"engine": "sqlite", "path": "bank.sqlite3"}, [local_target(n) for n in "abc"], lock_wait="3s")
    made = ws.opsctl("init")
    assert made.returncode == 0, made.output

    finished = ws.opsctl("keys", "rotate", "--resume")
    assert finished.returncode == 0, finished.output
    record = [e for e in map(json.loads, ws.audit_lines()) if e["command"] == "keys rotate"][-1]
    assert sorted(record["details"]["targets"]) == ["a", "b", "c"], record
    for folder in ("repo-a", "repo-b", "repo-c"):
        assert opens(ws, folder, ws.root / "repository.pass"), folder
        assert not opens(ws, folder, old_secret(ws)), folder
    assert key_ids(ws, "repo-c") == key_ids(ws, "repo-a")


def test_unreachable_at_preflight_changes_nothing_then_a_separate_repository_rotates(workspace):
    ws = workspace
    # Two repositories of their own (made by restic, not replicas): each gets its own key add.
    for folder in ("repo-a", "repo-b"):
        subprocess.run(["restic", "--repo", str(ws.root / folder), "--password-file", str(ws.root / "repository.pass"),
                        "init"], check=True, capture_output=True)
    initialised(ws, [local_target("a"), local_target("b")])
    before = {folder: key_ids(ws, folder) for folder in ("repo-a", "repo-b")}
    assert before["repo-a"] != before["repo-b"]
    (ws.root / "repo-b").rename(ws.root / "away")
    result = ws.opsctl("keys", "rotate")
    assert result.returncode == 1, result.output
    assert "preflight" in result.output and "b (local" in result.output and "nothing was changed" in result.output
    (ws.root / "away").rename(ws.root / "repo-b")
    assert {folder: key_ids(ws, folder) for folder in ("repo-a", "repo-b")} == before
    assert (ws.root / "repository.pass").read_text().strip() == ws.repository_password
    assert journal(ws) is None and old_secret(ws) is None and not (ws.root / "repository.pass.staged").exists()

    rotated = ws.opsctl("keys", "rotate")
    assert rotated.returncode == 0, rotated.output
    after = {folder: key_ids(ws, folder) for folder in ("repo-a", "repo-b")}
    assert after["repo-a"] != after["repo-b"] and all(len(ids) == 1 for ids in after.values())
    assert all(not ids & before[folder] for folder, ids in after.items())
    assert opens(ws, "repo-b", ws.root / "repository.pass") and not opens(ws, "repo-b", old_secret(ws))


def test_nas_lost_mid_rotation_pauses_or_stays_pending_until_it_is_back(workspace, sftp_endpoint):
    ws = initialised(workspace, [local_target(), sftp_target(sftp_endpoint)])
    current, staged = ws.root / "repository.pass", ws.root / "repository.pass.staged"

    # Lost before the switch: paused; local has both keys (not half-done), nothing switched.
    assert ws.opsctl("keys", "rotate", env={"OPSCTL_TEST_KILL_AT": "add:nas"}).returncode == -9
    sftp_endpoint.stop()
    paused = ws.opsctl("keys", "rotate", "--resume")
    assert paused.returncode == 1 and "paused" in paused.output and "nas (sftp" in paused.output, paused.output
    assert current.read_text().strip() == ws.repository_password
    assert opens(ws, "repo-local", current) and opens(ws, "repo-local", staged)
    sftp_endpoint.restart()

    # Lost after the switch: local is finished; the NAS keeps both keys and the journal remembers it.
    assert ws.opsctl("keys", "rotate", "--resume", env={"OPSCTL_TEST_KILL_AT": "remove:nas"}).returncode == -9
    sftp_endpoint.stop()
    partial = ws.opsctl("keys", "rotate", "--resume")
    assert partial.returncode == 3, partial.output
    assert opens(ws, "repo-local", current) and not opens(ws, "repo-local", old_secret(ws))
    sftp_endpoint.restart()
    status = ws.opsctl("keys", "status")
    assert status.returncode == 0 and "unfinished here" in status.output and "nas (sftp" in status.output, status.output
    assert ws.opsctl("backup").returncode == 0  # the NAS opens with the new password meanwhile

    done = ws.opsctl("keys", "rotate", "--resume")
    assert done.returncode == 0, done.output
    rows = json.loads(ws.opsctl("keys", "status", "--json").stdout)["targets"]
    assert [len(row["keys"]) for row in rows] == [1, 1] and all(not row["warnings"] for row in rows)


def test_foreign_key_is_never_removed_and_status_warns(workspace):
    ws = initialised(workspace, [local_target()], max_key_age="1s")
    ws.secret("foreign.pass", "someone-elses-" + "9" * 20)
    subprocess.run(["restic", "--repo", str(ws.root / "repo-local"), "--password-file",
                    str(ws.root / "repository.pass"), "key", "add", "--new-password-file",
                    str(ws.root / "foreign.pass")],
                   check=True, capture_output=True)
    result = ws.opsctl("keys", "rotate")
    assert result.returncode == 0, result.output
    assert opens(ws, "repo-local", ws.root / "foreign.pass")
    assert opens(ws, "repo-local", ws.root / "repository.pass") and not opens(ws, "repo-local", old_secret(ws))
    assert len(key_ids(ws, "repo-local")) == 2
    time.sleep(1.1)  # the new key must be older than max_key_age
    status = ws.opsctl("keys", "status")
    assert status.returncode == 0, status.output
    assert "unexpected extra key" in status.output and "older than max_key_age (1s)" in status.output


def test_password_from_command_is_rotated_through_store_command(workspace):
    ws = workspace
    store = ws.secret("vault.pass", ws.repository_password)
    sqlite_policy(ws, [local_target()], repository_password={
        "command": ["cat", str(store)], "store_command": ["sh", "-c", f"cat > {store}"]})
    assert ws.opsctl("init").returncode == 0
    result = ws.opsctl("keys", "rotate")
    assert result.returncode == 0, result.output
    assert store.read_text().strip() != ws.repository_password
    assert opens(ws, "repo-local", store)
    assert not (ws.root / "state" / "repository-password.staged").exists()


@pytest.mark.parametrize(("source", "says"), [
    ({"env": "CRM_RESTIC_PASSWORD"}, "environment variable CRM_RESTIC_PASSWORD"),
    ({"command": ["cat", "repository.pass"]}, "no store_command"),
])
def test_sources_rotation_cannot_write_are_refused(workspace, source, says):
    sqlite_policy(workspace, [local_target()], repository_password=source)
    result = workspace.opsctl("keys", "rotate", env={"CRM_RESTIC_PASSWORD": "x" * 20})
    assert result.returncode == 2 and says in result.output and "Traceback" not in result.output, result.output
    assert journal(workspace) is None


def test_two_rotations_never_run_at_once(workspace):
    sqlite_policy(workspace, [local_target()])
    (workspace.root / "state").mkdir(mode=0o700)
    with open(workspace.root / "state" / "run.lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        result = workspace.opsctl("keys", "rotate")
    assert result.returncode == 1 and "busy" in result.output, result.output
    assert journal(workspace) is None and not (workspace.root / "repository.pass.staged").exists()
