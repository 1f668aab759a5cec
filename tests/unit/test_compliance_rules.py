"""The rules' edge cases over a real policy and a real run record: several databases, a target that did not answer,
and a run record that lies (it is a file: anything in it may be wrong)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from opsctl.audit import runs
from opsctl.audit.runs import CommandRun, TargetRun, verification_facts
from opsctl.compliance.picture import Look, picture
from opsctl.compliance.rules import evaluate, verdict
from opsctl.policy import load_policy
from opsctl.policy.compliance import Compliance, retention_span
from opsctl.policy.model import Policy
from opsctl.targets import target_for

NOW = datetime.now(UTC).replace(microsecond=0)
HOUR = timedelta(hours=1)


@pytest.fixture
def policy(tmp_path: Path) -> Policy:
    """Two databases, a local disk and an off-site NAS share; rules 3-2-1 and rpo (24h)."""
    (tmp_path / "repo.pass").write_text("pw\n")
    (tmp_path / "repo.pass").chmod(0o600)
    document = {"name": "crm", "database": {"engine": "postgresql", "port": 5432, "user": "backup",
                                            "names": ["crm", "billing"]},
                "targets": [{"name": "local", "kind": "local", "path": "repo"},
                            {"name": "nas", "kind": "mount", "path": "nas", "offsite": True}],
                "repository_password": {"file": "repo.pass"}, "state_dir": "state"}
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(document))
    return load_policy(tmp_path / "policy.yaml")


def backed_up(policy: Policy, facts: dict[str, dict], command: str = "backup") -> None:
    """Record a run of `command` that stated these facts per target."""
    where = {config.name: target_for(config).display for config in policy.targets}
    targets = tuple(TargetRun(name, where[name], True, NOW.isoformat(), 1.0, facts=values)
                    for name, values in facts.items())
    runs.record(policy.state_dir, CommandRun(command, "ok", 0, NOW.isoformat(), 1.0, None, targets),
                NOW.isoformat())


def at(age: timedelta) -> str:
    return (NOW - age).isoformat()


def rules(policy: Policy, looks: dict[str, Look] | None = None) -> dict[str, tuple[str, str]]:
    found = evaluate(picture(policy, policy.state_dir, NOW, looks))
    return {v.rule: (v.status, v.reason) for v in found}


def test_a_target_is_a_copy_only_when_it_holds_every_database(policy):
    backed_up(policy, {"local": {"snapshot:crm": at(HOUR), "snapshot:billing": at(HOUR)},
                       "nas": {"snapshot:crm": at(HOUR)}})  # billing never reached the NAS
    status, reason = rules(policy)["3-2-1"]
    assert status == "FAIL" and "2 copies (live database, local)" in reason


def test_rpo_needs_every_database_verified_recently(policy):
    both = {"snapshot:crm": at(HOUR), "snapshot:billing": at(HOUR)}
    backed_up(policy, {"local": both, "nas": both})
    backed_up(policy, {"nas": {"verified:crm": at(HOUR), "verified:billing": at(30 * HOUR)}}, command="verify")
    status, reason = rules(policy)["rpo"]
    assert status == "FAIL" and "the newest verified snapshot of billing is 1d6h old" in reason
    backed_up(policy, {"local": {"verified:billing": at(2 * HOUR)}}, command="drill")  # another target proved it
    assert rules(policy)["rpo"][0] == "PASS"


def test_a_silent_target_makes_a_rule_unknown_only_when_it_could_make_it_hold(policy):
    both = {"snapshot:crm": at(HOUR), "snapshot:billing": at(HOUR)}
    backed_up(policy, {"local": both, "nas": both})
    silent = {"local": Look(True, newest={"crm": NOW - HOUR, "billing": NOW - HOUR}),
              "nas": Look(False, "did not answer within 30 s")}
    assert rules(policy, silent)["3-2-1"][0] == "UNKNOWN"
    assert verdict(evaluate(picture(policy, policy.state_dir, NOW, silent))) in ("UNKNOWN", "FAIL")
    # Without the off-site NAS answering, and the local copy empty, 3-2-1 cannot hold whatever the NAS says.
    empty = {**silent, "local": Look(True)}
    assert rules(policy, empty)["3-2-1"][0] == "FAIL"


def test_a_lying_run_record_is_read_as_nothing_known(policy):
    folder = runs.runs_dir(policy.state_dir)
    folder.mkdir(parents=True)
    (folder / "backup.json").write_text(json.dumps({
        "command": "backup", "outcome": "ok", "exit_code": 0, "finished_at": NOW.isoformat(),
        "targets": {"local": {"target": "local", "location": "x", "ok": True, "finished_at": "yesterday",
                              "duration_s": 1, "facts": {"snapshot:crm": "not a time", "snapshot:billing": True}},
                    "nas": {"target": "nas", "location": "y", "ok": True, "finished_at": NOW.isoformat(),
                            "duration_s": 1, "facts": {"snapshot:crm": "2026-01-01T00:00:00"}}}}))  # no zone
    (folder / "verify.json").write_text("{not json")
    found = rules(policy)
    assert found["3-2-1"][0] == "FAIL" and "1 copy (live database)" in found["3-2-1"][1]
    assert found["rpo"][0] == "FAIL"


def test_a_record_from_an_unknown_future_version_is_ignored(policy):
    folder = runs.runs_dir(policy.state_dir)
    folder.mkdir(parents=True)
    (folder / "backup.json").write_text(json.dumps({"command": "backup", "unknown_field": 1}))
    assert rules(policy)["3-2-1"][0] == "FAIL"


def test_a_time_ahead_of_now_counts_as_no_time(policy):
    """A clock that once ran ahead must not keep a rule passing until it is reached."""
    future = (NOW + timedelta(days=400)).isoformat()
    both = {"snapshot:crm": at(HOUR), "snapshot:billing": at(HOUR)}
    backed_up(policy, {"local": both, "nas": both})
    backed_up(policy, {"local": {"verified:crm": future, "verified:billing": future}}, command="verify")
    backed_up(policy, {"local": {"key_created": future}, "nas": {"key_created": future}}, command="keys status")
    found = rules(policy)
    assert found["rpo"][0] == "FAIL" and found["key-age"][0] == "UNKNOWN"


def test_a_failed_backup_deletes_nothing_but_a_silent_status_makes_holdings_unknown(policy):
    both = {"snapshot:crm": at(2 * HOUR), "snapshot:billing": at(2 * HOUR)}
    backed_up(policy, {"local": both, "nas": both})
    where = target_for(policy.targets[1]).display
    later = (NOW + timedelta(minutes=1)).isoformat()
    failed = CommandRun("backup", "partial", 3, NOW.isoformat(), 1.0, None,
                        (TargetRun("nas", where, False, NOW.isoformat(), 1.0, "the connection was lost"),))
    runs.record(policy.state_dir, failed, NOW.isoformat())
    assert rules(policy)["3-2-1"][0] == "PASS"  # a network blip during a backup takes nothing away
    silent = CommandRun("status", "partial", 3, later, 1.0, None,
                        (TargetRun("nas", where, False, later, 1.0, "did not answer within 30 s"),))
    runs.record(policy.state_dir, silent, later)
    assert rules(policy)["3-2-1"][0] == "UNKNOWN"
    # An online look that found the repository empty is an answer: no copy there.
    answered = {"local": Look(True, newest={"crm": NOW - HOUR, "billing": NOW - HOUR}),
                "nas": Look(True, "there is no restic repository", snapshots=0)}
    assert rules(policy, answered)["3-2-1"][0] == "FAIL"


def test_a_verified_restore_proves_a_snapshot_but_never_hides_a_failed_verification(policy):
    both = {"snapshot:crm": at(HOUR), "snapshot:billing": at(HOUR)}
    backed_up(policy, {"local": both, "nas": both})
    failed = {**verification_facts("crm", False, at(HOUR), None), **verification_facts("billing", True, at(HOUR),
                                                                                      at(HOUR))}
    backed_up(policy, {"local": failed, "nas": failed}, command="verify")
    backed_up(policy, {"local": {"verified:crm": at(HOUR)}}, command="restore")
    seen = picture(policy, policy.state_dir, NOW, None)
    assert seen.targets[0].verified["crm"] == NOW - HOUR
    assert seen.targets[0].verification is not None and not seen.targets[0].verification.ok


def test_the_last_drill_is_the_one_that_ended_last(policy):
    where = {config.name: target_for(config).display for config in policy.targets}
    older = TargetRun("local", where["local"], True, at(48 * HOUR), 60.0, facts={"rto_s": 60.0})
    newer = TargetRun("nas", where["nas"], False, at(HOUR), 60.0, "not proven", facts={"rto_s": None})
    runs.record(policy.state_dir, CommandRun("drill", "failed", 1, at(HOUR), 60.0, "not proven", (older, newer)),
                at(HOUR))
    drill = picture(policy, policy.state_dir, NOW, None).drill
    assert drill is not None and drill.target == "nas" and not drill.ok


def test_a_lock_weaker_than_the_policy_asks_is_no_immutable_copy(policy):
    both = {"snapshot:crm": at(HOUR), "snapshot:billing": at(HOUR)}
    backed_up(policy, {"local": both, "nas": both})
    weak = {"local": Look(True, newest={"crm": NOW - HOUR, "billing": NOW - HOUR}, locked=False),
            "nas": Look(True, newest={"crm": NOW - HOUR, "billing": NOW - HOUR}, locked=True,
                        lock_hint="the bucket locks new files in GOVERNANCE mode, not COMPLIANCE")}
    status, reason = rules(policy, weak)["3-2-1-1-0"]
    assert status == "FAIL" and "no immutable or offline copy" in reason


def test_retention_span_follows_backups_further_apart_than_the_rule():
    assert retention_span({"keep_daily": 14}, timedelta(weeks=1)) == timedelta(weeks=14)
    assert retention_span({"keep_daily": 7, "keep_monthly": 12}, HOUR) == timedelta(days=372)
    assert retention_span({"keep_last": 3}, None) is None
    assert retention_span({"keep_last": 3, "keep_monthly": 12}, None) == timedelta(days=372)


def test_compliance_needs_a_rule():
    with pytest.raises(ValueError, match="at least 1 item"):
        Compliance(rules=())


def test_an_answer_that_nothing_is_there_stays_an_answer_offline(policy):
    """Online status found no repository on the NAS: offline status afterwards says the same, not "unknown"."""
    both = {"snapshot:crm": at(2 * HOUR), "snapshot:billing": at(2 * HOUR)}
    backed_up(policy, {"local": both, "nas": both})
    where = target_for(policy.targets[1]).display
    later = (NOW + timedelta(minutes=1)).isoformat()
    empty = TargetRun("nas", where, False, later, 1.0, "there is no restic repository",
                      facts={"snapshot:crm": None, "snapshot:billing": None, "snapshots": 0})
    runs.record(policy.state_dir, CommandRun("status", "failed", 1, later, 1.0, None, (empty,)), later)
    assert rules(policy)["3-2-1"][0] == "FAIL"
