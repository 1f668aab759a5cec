"""Jobs that run on their own: the `schedule run` daemon, skipped and missed runs, turns, and the systemd units.

The daemon is a real process running a policy whose backup is due every few seconds (systemd's
calendar grammar has seconds); its one line per job on stdout is what the tests read.
"""

from __future__ import annotations

import fcntl
import json
import os
import pwd
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.support.bank import make_bank
from tests.support.workspace import REPO_ROOT, Workspace

EVERY_FEW_SECONDS = "*:*:0/4"


@pytest.fixture
def crm(workspace: Workspace) -> Workspace:
    make_bank(workspace.root / "bank.sqlite3")
    write_schedule(workspace, {"backup": EVERY_FEW_SECONDS, "prune": "off", "check": "off", "verify": "off",
                               "drill": "off", "randomized_delay": "1s"})
    assert workspace.opsctl("init").returncode == 0
    return workspace


REPO_PASS_VARIABLE = "CRM_TEST_REPOSITORY_PASSWORD"


def write_schedule(workspace: Workspace, schedule: dict, **extra) -> None:
    workspace.write_policy({"engine": "sqlite", "path": "bank.sqlite3"},
                           [{"name": "local", "kind": "local", "path": "repo-local"},
                            {"name": "offsite", "kind": "local", "path": "repo-offsite", "offsite": True}],
                           schedule=schedule, **extra)


class Daemon:
    """`opsctl schedule run --log-format json` in the background, its stdout lines in a queue."""

    def __init__(self, workspace: Workspace) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "XDG_CACHE_HOME": str(workspace.root / ".cache"),
               REPO_PASS_VARIABLE: workspace.repository_password}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "opsctl", "--policy", str(workspace.root / "policy.yaml"), "schedule", "run",
             "--log-format", "json"], cwd=workspace.root, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[dict] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))

    def next_line(self, timeout: float = 30) -> dict:
        return self.lines.get(timeout=timeout)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)


@pytest.fixture
def daemon(crm):
    running = Daemon(crm)
    yield running
    if running.proc.poll() is None:
        running.proc.kill()
        running.proc.wait()


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue
    return found


def wait_for(found, timeout: float = 15):
    deadline = time.monotonic() + timeout
    while not (result := found()):
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.1)
    return result


def test_the_daemon_runs_on_time_survives_a_failing_job_and_stops_cleanly(crm):
    # The password from an environment variable, as in a container: the daemon's jobs must still get it.
    write_schedule(crm, {"backup": EVERY_FEW_SECONDS, "prune": "off", "check": "off", "verify": "off",
                         "drill": "off", "randomized_delay": "0"}, repository_password={"env": REPO_PASS_VARIABLE})
    daemon = Daemon(crm)
    try:
        _runs_on_time_survives_a_failing_job_and_stops_cleanly(crm, daemon)
    finally:
        daemon.proc.kill()


def _runs_on_time_survives_a_failing_job_and_stops_cleanly(crm, daemon):
    first = daemon.next_line()
    assert (first["job"], first["outcome"], first["exit_code"]) == ("backup", "ok", 0), first

    shutil.rmtree(crm.root / "repo-local")  # the primary is gone: the next runs fail on it
    shutil.rmtree(crm.root / "repo-offsite")
    failing = daemon.next_line()
    assert failing["outcome"] == "failed" and failing["exit_code"] == 1, failing
    assert daemon.proc.poll() is None  # a failing job is a line in the log, not the daemon's end

    assert crm.opsctl("init", env={REPO_PASS_VARIABLE: crm.repository_password}).returncode == 0
    # The run already under way may still fail, and one due while init held the policy is skipped: then ok.
    outcomes = [daemon.next_line()["outcome"]]
    while outcomes[-1] != "ok" and len(outcomes) < 4:
        outcomes.append(daemon.next_line()["outcome"])
    assert outcomes[-1] == "ok" and set(outcomes) <= {"ok", "failed", "skipped"}, outcomes
    assert daemon.stop() == 0
    record = json.loads((crm.root / "state" / "runs" / "backup.json").read_text())
    assert record["outcome"] == "ok" and record["running"] is None
    assert "Traceback" not in daemon.proc.stderr.read()


def test_a_job_due_while_the_policy_is_busy_is_skipped_and_shown(crm):
    with open(crm.root / "state" / "run.lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another run holds the policy past this job's next due time
        started = time.monotonic()
        result = crm.opsctl("schedule", "job", "backup")
        waited = time.monotonic() - started
    assert result.returncode == 75, result.output
    assert waited < 15  # it waited for its next run at most, then gave up: not queued
    assert "skipped" in result.stderr and "next one runs on time" in result.stderr

    status = crm.opsctl("schedule", "status", "--json")
    backup = next(j for j in json.loads(status.stdout)["jobs"] if j["job"] == "backup")
    assert backup["skipped"] == 1 and backup["last_outcome"] is None  # a skip is no run, and no success
    assert json.loads(crm.audit_lines()[-2])["outcome"] == "skipped"


def test_a_job_still_running_when_it_is_due_again_is_skipped_by_the_daemon(crm, daemon):
    assert daemon.next_line()["outcome"] == "ok"
    with open(crm.root / "state" / "run.lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        skipped = daemon.next_line()
        assert (skipped["outcome"], skipped["exit_code"]) == ("skipped", 75)
        # SIGTERM while a job waits: the job is stopped too, the daemon ends, nothing is left running.
        job = wait_for(lambda: children_of(daemon.proc.pid))  # the next run, waiting for the policy in turn
        assert daemon.stop() == 0
    assert all(not Path(f"/proc/{pid}").exists() for pid in job)
    second = Daemon(crm)  # the daemon's own lock was released
    try:
        assert second.next_line()["job"] == "backup"
    finally:
        second.stop()


def test_a_missed_run_shows_in_status(crm):
    assert crm.opsctl("schedule", "job", "backup").returncode == 0
    record_path = crm.root / "state" / "runs" / "backup.json"
    record = json.loads(record_path.read_text())
    record["finished_at"] = "2026-01-01T00:00:00+00:00"  # the host was off for months
    record_path.write_text(json.dumps(record))
    status = crm.opsctl("schedule", "status")
    assert status.returncode == 1 and "MISSED" in status.stdout, status.output


def test_scheduled_checks_read_every_part_in_turn_and_verifies_take_targets_in_turn(crm):
    write_schedule(crm, {"randomized_delay": "1s"}, verification={"read_data_subset": "1/2"})
    assert crm.opsctl("backup").returncode == 0
    parts = []
    for _ in range(3):
        result = crm.opsctl("schedule", "job", "check", "--json")
        assert result.returncode == 0, result.output
        parts.append([t["summary"] for t in json.loads(result.stdout)["targets"]])
    assert [p[0].split("and ")[1].split(" of")[0] for p in parts] == ["1/2", "2/2", "1/2"]  # all read, then again

    targets = []
    for _ in range(2):
        result = crm.opsctl("schedule", "job", "verify", "--json")
        assert result.returncode == 0, result.output
        targets.append(json.loads(crm.audit_lines()[-1])["targets"])
    assert targets[0] != targets[1]  # the next verify proves the other target


def test_install_writes_verifiable_units_once_shows_diffs_and_never_touches_foreign_files(crm, tmp_path):
    out = tmp_path / "units"
    first = crm.opsctl("schedule", "install", "--output", str(out), "--json")
    assert first.returncode == 0, first.output
    names = sorted(p.name for p in out.iterdir())
    assert names == ["opsctl-crm-test-backup.service", "opsctl-crm-test-backup.timer",
                     "opsctl-crm-test-failed@.service"]
    verify = subprocess.run(["systemd-analyze", "verify", *map(str, sorted(out.iterdir()))], capture_output=True,
                            text=True, check=False)
    assert verify.returncode == 0 and str(out) not in verify.stderr, verify.stderr

    second = crm.opsctl("schedule", "install", "--output", str(out), "--json")
    assert {u["change"] for u in json.loads(second.stdout)["units"]} == {"unchanged"}

    write_schedule(crm, {"backup": "hourly", "prune": "off", "check": "off", "verify": "off", "drill": "off"})
    changed = crm.opsctl("schedule", "install", "--output", str(out))
    assert "changed" in changed.stdout and "+OnCalendar=*-*-* *:00:00" in changed.stdout

    foreign = out / "opsctl-crm-test-prune.timer"
    foreign.write_text("[Timer]\nOnCalendar=daily\n")
    write_schedule(crm, {"backup": "hourly", "prune": "daily", "check": "off", "verify": "off", "drill": "off"})
    refused = crm.opsctl("schedule", "install", "--output", str(out))
    assert refused.returncode == 2 and "not written by opsctl" in refused.stderr
    assert foreign.read_text() == "[Timer]\nOnCalendar=daily\n"

    foreign.unlink()
    twin = crm.root / "twin"
    twin.mkdir()
    (twin / "policy.yaml").write_text((crm.root / "policy.yaml").read_text())  # another file, the same name
    (twin / "repository.pass").write_text(crm.repository_password)
    (twin / "repository.pass").chmod(0o600)
    clash = crm.opsctl("schedule", "install", "--output", str(out), policy="twin/policy.yaml")
    assert clash.returncode == 2 and "another policy file has the same name" in clash.stderr, clash.output

    (out / "hand-made.service").write_text("[Service]\nExecStart=/bin/true\n")
    removed = crm.opsctl("schedule", "remove", "--output", str(out))
    assert removed.returncode == 0, removed.output
    assert sorted(p.name for p in out.iterdir()) == ["hand-made.service"]


def _tree(folder: Path) -> dict[str, bytes | None]:
    """Every file (its bytes) and folder (None) under folder, by relative path: what a dry run must leave alone."""
    found: dict[str, bytes | None] = {}
    for path in sorted(folder.rglob("*")):
        found[str(path.relative_to(folder))] = None if path.is_dir() else path.read_bytes()
    return found


def test_dry_run_shows_what_install_would_change_and_writes_nothing(crm, tmp_path):
    out = tmp_path / "units"
    state = _tree(crm.root / "state")
    planned = crm.opsctl("schedule", "install", "--dry-run", "--output", str(out), "--json")
    assert planned.returncode == 0, planned.output
    plan = json.loads(planned.stdout)
    assert plan["dry_run"] and plan["changed"] and {u["change"] for u in plan["units"]} == {"new"}
    assert not out.exists()  # not even the folder
    # Nor in the state folder: no audit line, no run record (the last real install's stays), no lock file.
    assert _tree(crm.root / "state") == state
    installed = json.loads(crm.opsctl("schedule", "install", "--output", str(out), "--json").stdout)
    assert [u["name"] for u in installed["units"]] == [u["name"] for u in plan["units"]] and installed["changed"]

    write_schedule(crm, {"backup": "hourly", "prune": "off", "check": "off", "verify": "off", "drill": "off"})
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    text = crm.opsctl("schedule", "install", "--dry-run", "--output", str(out))
    assert "changed" in text.stdout and "+OnCalendar=*-*-* *:00:00" in text.stdout and "dry run" in text.stdout
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    state = _tree(crm.root / "state")
    assert crm.opsctl("schedule", "install", "--dry-run", "--output", str(out), "--json").returncode == 0
    assert _tree(crm.root / "state") == state

    # A policy whose state folder is not there yet: the dry run neither makes it nor fails for it.
    write_schedule(crm, {"backup": "hourly", "prune": "off", "check": "off", "verify": "off", "drill": "off"},
                   state_dir="state-new")
    fresh = crm.opsctl("schedule", "install", "--dry-run", "--output", str(out), "--json")
    assert fresh.returncode == 0 and json.loads(fresh.stdout)["dry_run"], fresh.output
    assert not (crm.root / "state-new").exists()


def test_schedule_user_runs_the_jobs_as_that_user_and_what_cannot_work_is_refused(crm, tmp_path):
    out = tmp_path / "units"
    jobs = {"backup": "hourly", "prune": "off", "check": "off", "verify": "off", "drill": "off"}
    write_schedule(crm, {**jobs, "user": "nosuch-opsctl-user"})
    missing = crm.opsctl("schedule", "install", "--output", str(out))
    assert missing.returncode == 2 and "schedule.user" in missing.stderr and "no user" in missing.stderr

    write_schedule(crm, {**jobs, "user": "daemon"})
    as_user_unit = crm.opsctl("schedule", "install", "--user", "--output", str(out))
    assert as_user_unit.returncode == 2 and "schedule.user (daemon) is for system units" in as_user_unit.stderr
    assert not out.exists()

    if os.geteuid() != 0:
        return  # the rest is root installing the units of another user's jobs
    # Root installs them without opening that user's files (its secrets and state folder are the user's), and
    # leaves that user's state folder, which the units need, for the user to make: root's is refused.
    lines = len(crm.audit_lines())
    refused = crm.opsctl("schedule", "install", "--output", str(out))
    assert refused.returncode == 2 and "not owned by schedule.user (daemon)" in refused.stderr, refused.output
    planned = crm.opsctl("schedule", "install", "--dry-run", "--output", str(out))  # refuses what install refuses
    assert planned.returncode == 2 and "not owned by schedule.user (daemon)" in planned.stderr, planned.output
    os.chown(crm.root / "state", pwd.getpwnam("daemon").pw_uid, -1)
    installed = crm.opsctl("schedule", "install", "--output", str(out), "--json")
    assert installed.returncode == 0, installed.output
    assert "\nUser=daemon\n" in (out / "opsctl-crm-test-backup.service").read_text()
    again = crm.opsctl("schedule", "install", "--dry-run", "--output", str(out), "--json")
    assert json.loads(again.stdout)["changed"] is False
    os.chown(crm.root / "state", 0, -1)
    assert len(crm.audit_lines()) == lines  # nothing written in that user's trail
