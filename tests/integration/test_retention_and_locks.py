"""Retention keeps exactly what the keep-rules say, only for this policy; locks are waited for or cleared."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.support.bank import make_bank
from tests.support.targets import local_target


@pytest.fixture
def bank(workspace):
    make_bank(workspace.root / "bank.sqlite3")
    workspace.write_policy({"engine": "sqlite", "path": "bank.sqlite3"}, [local_target()],
                           retention={"keep_daily": 3, "keep_weekly": 2}, lock_wait="3s")
    assert workspace.opsctl("init").returncode == 0
    return workspace


def restic(ws, *args: str, **kwargs) -> subprocess.CompletedProcess:
    """restic itself, as an operator (or another tool) would run it on the same repository."""
    return subprocess.run(["restic", "--repo", str(ws.root / "repo-local"), "--password-file",
                           str(ws.root / "repository.pass"), *args],
                          capture_output=True, text=True, check=False, **kwargs)


def snapshot_at(ws, when: datetime, policy: str = "crm-test") -> None:
    result = restic(ws, "backup", "--stdin", "--stdin-filename", "bank.sqlite3", "--time",
                    when.strftime("%Y-%m-%d %H:%M:%S"), "--tag", f"opsctl,policy={policy},db=bank",
                    input=f"data of {when}")
    assert result.returncode == 0, result.stderr


def test_prune_keeps_exactly_what_the_rules_say_and_never_touches_another_policy(bank):
    now = datetime.now(UTC).replace(microsecond=0)
    # One a day for 17 days, and a second one on the newest days: only the newest of a day counts.
    days = [now - timedelta(days=d, hours=1) for d in range(17)] + [now - timedelta(days=d, hours=13) for d in range(3)]
    for when in days:
        snapshot_at(bank, when)
    snapshot_at(bank, now - timedelta(days=40), policy="other-policy")

    dry = bank.opsctl("--json", "prune", "--dry-run")
    assert dry.returncode == 0, dry.output
    row = json.loads(dry.stdout)["targets"][0]
    listed = json.loads(restic(bank, "snapshots", "--json").stdout)
    assert len(listed) == len(days) + 1, "a dry run removes nothing"

    # keep_daily 3: the newest of each of the last 3 days; keep_weekly 2: the newest of 2 more weeks.
    by_day: dict = {}
    for when in sorted(days):
        by_day[when.date()] = when
    daily = sorted(by_day.values(), reverse=True)[:3]
    by_week: dict = {}
    for when in sorted(days):
        by_week[when.isocalendar()[:2]] = when
    weekly = sorted(by_week.values(), reverse=True)[:2]
    expected = {w.strftime("%Y-%m-%d %H:%M") for w in (*daily, *weekly)}
    times = {datetime.fromisoformat(s["time"][:19]).strftime("%Y-%m-%d %H:%M")
             for s in listed if s["id"] in set(row["kept"])}
    assert times == expected

    assert bank.opsctl("prune").returncode == 0
    after = json.loads(restic(bank, "snapshots", "--json").stdout)
    assert sorted(s["id"] for s in after if "policy=crm-test" in s["tags"]) == sorted(row["kept"])
    assert [s for s in after if "policy=other-policy" in s["tags"]], "another policy's snapshot was removed"


def _hold_exclusive_lock(ws) -> subprocess.Popen:
    """A restic check holds the exclusive lock; frozen (SIGSTOP) so the lock stays while we test."""
    noise = ws.root / "noise"
    noise.write_bytes(os.urandom(80 << 20))
    assert restic(ws, "backup", str(noise)).returncode == 0
    proc = subprocess.Popen(["restic", "--repo", str(ws.root / "repo-local"), "--password-file",
                             str(ws.root / "repository.pass"), "check", "--read-data"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    locks = ws.root / "repo-local" / "locks"
    deadline = time.monotonic() + 30
    while not any(locks.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    proc.send_signal(signal.SIGSTOP)
    return proc


def test_a_live_lock_is_waited_for_then_named_and_a_stale_one_is_removed(bank):
    holder = _hold_exclusive_lock(bank)
    try:
        started = time.monotonic()
        blocked = bank.opsctl("backup")
        waited = time.monotonic() - started
        assert blocked.returncode == 1, blocked.output
        assert f"locked by restic PID {holder.pid}" in blocked.stdout and "waited 3 s" in blocked.stdout
        assert waited >= 3
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # The holder is gone but its lock file stays: opsctl removes it as stale and goes on.
    assert any((bank.root / "repo-local" / "locks").iterdir())
    result = bank.opsctl("backup")
    assert result.returncode == 0, result.output
