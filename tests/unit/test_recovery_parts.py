"""The restore path's pure parts: choosing a snapshot and a target, estimating, and the runbook's words."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from opsctl.actions.history import estimate
from opsctl.actions.locate import nearness
from opsctl.actions.recovery import pick_snapshot
from opsctl.cli import main
from opsctl.reports.runbook import next_steps
from opsctl.restic.errors import SnapshotNotFound
from opsctl.restic.models import Snapshot
from opsctl.sources import Destination

T0 = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)


def snap(minutes: int) -> Snapshot:
    return Snapshot(id=f"{minutes:02d}" * 32, short_id=f"{minutes:02d}" * 4, time=T0 + timedelta(minutes=minutes),
                    hostname="h", username="u", paths=(), tags=())


def test_at_picks_the_newest_snapshot_taken_at_or_before_it():
    snapshots = [snap(30), snap(0), snap(60)]
    assert pick_snapshot(snapshots, "latest", T0 + timedelta(minutes=45)).time == T0 + timedelta(minutes=30)
    assert pick_snapshot(snapshots, "latest", T0 + timedelta(minutes=30)).time == T0 + timedelta(minutes=30)
    assert pick_snapshot(snapshots, "latest").time == T0 + timedelta(minutes=60)


def test_at_before_the_first_snapshot_names_the_oldest():
    with pytest.raises(SnapshotNotFound, match="the oldest is from 2026-11-20 03:00:00"):
        pick_snapshot([snap(0)], "latest", T0 - timedelta(seconds=1))


def test_nearest_means_on_site_first_then_disk_share_sftp_s3():
    configs = [SimpleNamespace(name=n, kind=k, offsite=o) for n, k, o in
               (("cloud", "s3", True), ("usb", "local", True), ("nas", "sftp", False), ("disk", "local", False),
                ("share", "mount", False))]
    assert [c.name for c in sorted(configs, key=nearness)] == ["disk", "share", "nas", "usb", "cloud"]


def _trail(tmp_path, entries: list[dict]):
    (tmp_path / "audit.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries) + "not json\n")
    return tmp_path


def _run(command: str, size: int, seconds: float, engine: str = "postgresql", outcome: str = "ok") -> dict:
    return {"command": command, "outcome": outcome,
            "details": {"engine": engine, "dump_bytes": size, "recovery_s": seconds, "rto_s": seconds + 1}}


def test_estimate_scales_a_past_drill_of_a_similar_size_of_the_same_engine(tmp_path):
    state = _trail(tmp_path, [_run("drill", 100_000_000, 10.0, outcome="failed"),  # missed an objective, still measured
                              _run("restore", 1, 100.0, engine="sqlite")])
    found = estimate(state, "postgresql", 150_000_000)
    assert found.seconds == pytest.approx(15.0) and "1 postgresql drill" in found.basis
    assert estimate(state, "mysql", 1).seconds is None


def test_a_tiny_restore_does_not_scale_to_a_large_one(tmp_path):
    state = _trail(tmp_path, [_run("restore", 2_900, 1.2)])  # 2.9 KiB in 1.2 s is start-up, not speed
    found = estimate(state, "postgresql", int(6.4 * 2**20))
    assert found.seconds is None and "too far from 6.4 MiB" in found.basis


def test_runs_of_different_sizes_give_a_fixed_and_a_per_byte_part(tmp_path):
    # 1 s to start, then 10 s per 100 MB
    state = _trail(tmp_path, [_run("restore", 3_000, 1.0), _run("drill", 100_000_000, 11.0),
                              _run("drill", 400_000_000, 41.0)])
    found = estimate(state, "postgresql", 200_000_000)
    assert found.seconds == pytest.approx(21.0, rel=0.02) and "fitted to the last 3" in found.basis
    assert estimate(state, "postgresql", 6_000_000).seconds == pytest.approx(1.6, rel=0.1)


def test_a_fit_is_not_stretched_far_beyond_the_runs_it_came_from(tmp_path):
    state = _trail(tmp_path, [_run("restore", 1 << 20, 1.2), _run("drill", 4 << 20, 1.5)])
    assert estimate(state, "postgresql", 10 << 20).seconds == pytest.approx(2.1, rel=0.02)  # 1.1 s + 0.1 s/MiB
    assert estimate(state, "postgresql", 1 << 40).seconds is None


def test_damaged_trail_lines_are_skipped_not_trusted(tmp_path):
    bad = [{"command": "restore", "outcome": "ok", "details": details} for details in (
        {"engine": "postgresql", "dump_bytes": 100, "recovery_s": "0"},
        {"engine": "postgresql", "dump_bytes": 0.5, "recovery_s": 1.0},
        {"engine": "postgresql", "dump_bytes": "abc", "recovery_s": 1.0},
        {"engine": "postgresql", "dump_bytes": [1], "recovery_s": 1.0},
        {"engine": "postgresql", "dump_bytes": 100, "recovery_s": float("inf")},
        {"engine": "postgresql", "dump_bytes": 100, "recovery_s": -3.0},
        {"engine": "postgresql", "dump_bytes": True, "recovery_s": 1.0},
        "not a dict")]
    state = _trail(tmp_path, [*bad, _run("restore", 100_000_000, 10.0)])
    assert estimate(state, "postgresql", 100_000_000).seconds == pytest.approx(10.0)


def test_without_history_the_estimate_says_how_to_get_one(tmp_path):
    assert "opsctl drill" in estimate(tmp_path, "postgresql", 10).basis


def test_runbook_says_how_to_undo_a_replace_with_the_aside_name():
    destination = Destination(name="crm", display="database crm on 127.0.0.1:5432", exists=True, empty=False,
                              is_source=True)
    steps = next_steps("postgresql", destination, "crm_before_restore_abc123")
    assert any('ALTER DATABASE "crm_before_restore_abc123" RENAME TO "crm"' in step for step in steps)
    assert steps[-1].endswith("opsctl backup")


def test_runbook_for_a_new_copy_says_nothing_was_replaced():
    destination = Destination(name="/srv/crm.restored.sqlite3", display="file /srv/crm.restored.sqlite3",
                              exists=False, empty=True, is_source=False)
    steps = next_steps("sqlite", destination, None)
    assert any(step.startswith("Nothing was replaced") and "rm '/srv/crm.restored.sqlite3'" in step for step in steps)


def test_a_script_must_say_yes(tmp_path):
    result = CliRunner().invoke(main, ["--policy", str(tmp_path / "missing.yaml"), "restore"])
    assert result.exit_code == 2 and "--yes" in result.output


def test_at_that_is_not_a_time_is_refused_by_name():
    result = CliRunner().invoke(main, ["restore", "--yes", "--at", "yesterday-ish"])
    assert result.exit_code == 2 and "--at" in result.output and "2026-11-20 03:00" in result.output
