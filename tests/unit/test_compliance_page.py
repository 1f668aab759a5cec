"""The auditor's compliance page: built from a real policy and run record, sealed, the same bytes on every render,
any edit found, nothing shown as None, every name escaped."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from markupsafe import escape

from opsctl.audit import runs
from opsctl.audit.runs import CommandRun, TargetRun, verification_facts
from opsctl.compliance.document import FORMAT, content
from opsctl.compliance.picture import Look, Picture, TargetState, picture
from opsctl.compliance.rules import evaluate, verdict
from opsctl.policy import load_policy
from opsctl.policy.compliance import RULES
from opsctl.policy.model import Policy
from opsctl.reports import compliance, sealed
from opsctl.targets import target_for

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
LOCATIONS = dict.fromkeys(("local", "nas", "offsite"), "")  # each target's display name, once the policy is loaded
EMBED = '<script type="application/json" id="opsctl-report">'


def write_policy(folder: Path, databases: dict | None = None) -> Policy:
    """crm-prod with every rule required: a local disk, a NAS kept offline, a locked S3 bucket off-site."""
    for name in ("repo.pass", "s3.env"):
        (folder / name).write_text("AWS_ACCESS_KEY_ID=K\nAWS_SECRET_ACCESS_KEY=s\n" if name == "s3.env" else "pw\n")
        (folder / name).chmod(0o600)
    policy = {"name": "crm-prod", "database": databases or {"engine": "sqlite", "path": "crm.sqlite3"},
              "targets": [{"name": "local", "kind": "local", "path": "repo"},
                          {"name": "nas", "kind": "mount", "path": "nas", "offline": True},
                          {"name": "offsite", "kind": "s3", "endpoint": "https://s3.example", "bucket": "acme",
                           "prefix": "crm", "credentials": {"file": "s3.env"}, "offsite": True,
                           "retention": {"keep_daily": 14}, "object_lock": {"mode": "COMPLIANCE", "days": 30}}],
              "repository_password": {"file": "repo.pass"}, "state_dir": "state",
              "compliance": {"rules": list(RULES)}}
    path = folder / "policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    loaded = load_policy(path)
    LOCATIONS.update({config.name: target_for(config).display for config in loaded.targets})
    return loaded


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Policy:
    """The policy, loaded once: validating its object lock against the backup schedule takes a second."""
    return write_policy(tmp_path_factory.mktemp("policy"))


@pytest.fixture
def policy(loaded: Policy, tmp_path: Path) -> Policy:
    """The policy with a run record of this test's own."""
    return loaded.model_copy(update={"state_dir": tmp_path / "state"})


def ago(**delta: float) -> str:
    return (NOW - timedelta(**delta)).isoformat(timespec="seconds")


def record(state: Path, command: str, targets: dict[str, dict], *, outcome: str = "ok", error: str | None = None,
           finished: str | None = None) -> None:
    """One command's run record: targets maps a target to its facts (and ok / error when it failed there)."""
    finished = finished or ago(hours=1)
    rows = tuple(TargetRun(name, LOCATIONS[name], facts.pop("ok", True), finished, 1.0, facts.pop("error", None),
                           facts=facts) for name, facts in targets.items())
    runs.record(state, CommandRun(command, outcome, 0 if outcome == "ok" else 1, finished, 1.0, error, rows), finished)


def history(policy: Policy, *, healthy: bool) -> Path:
    """A run record: backups on every target 2h ago, verifications, a check, keys, locks and a drill.

    Unhealthy: the off-site verification failed, its check found errors, every key is 400 days old.
    """
    state = policy.state_dir
    assert state is not None
    snapshots = {f"snapshot:{db}": ago(hours=2) for db in policy.database.names}
    verified: dict = {}
    failed: dict = {"ok": False, "error": "2 tables differ from the manifest"}
    for db in policy.database.names:
        verified.update(verification_facts(db, True, ago(hours=1), ago(hours=2)))
        failed.update(verification_facts(db, False, ago(hours=1), ago(hours=2)))
    record(state, "backup", {name: dict(snapshots) for name in LOCATIONS}, finished=ago(hours=2))
    record(state, "verify", {"local": dict(verified), "nas": dict(verified),
                             "offsite": dict(verified) if healthy else failed},
           outcome="ok" if healthy else "failed")
    check_bad = {} if healthy else {"ok": False, "error": "pack 3f2a is damaged", "damaged": True}
    record(state, "check", {"offsite": {"read_data_subset": "5%", **check_bad}})
    key = ago(days=30) if healthy else ago(days=400)
    lock = {"locked": True, "lock_detail": "COMPLIANCE mode, 30 days", "locked_until": ago(days=-30)}
    record(state, "status", {"local": {"snapshots": 12, "key_created": key, "locked": False, **snapshots},
                             "nas": {"snapshots": 12, "key_created": key, "locked": False, **snapshots},
                             "offsite": {"snapshots": 12, "key_created": key, **lock, **snapshots}})
    record(state, "drill", {"offsite": {"rto_s": 1260.0, "rpo_s": 7200.0}}, finished=ago(days=3))
    return state


def document(pic: Picture) -> dict:
    verdicts = evaluate(pic)
    return content(pic, verdicts, verdict(verdicts), {"offsite": "3 of 10 parts read this cycle"})


def report_of(policy: Policy, *, healthy: bool, looks: dict[str, Look] | None = None) -> compliance.ComplianceReport:
    return compliance.build(document(picture(policy, history(policy, healthy=healthy), NOW, looks)))


def visible(page: str) -> str:
    """The page without its embedded JSON: what a reader sees."""
    head, tail = page.split(EMBED)
    return head + tail.split("</script>", 1)[1]


def test_a_failing_policy_gives_a_failed_page_with_every_rule_target_and_what_to_do(policy):
    report = report_of(policy, healthy=False)
    assert report.verdict == "FAIL" and report.to_json()["format"] == FORMAT
    page = visible(compliance.render_html(report.to_json()))
    assert '<h1 id="verdict">Compliance FAIL</h1>' in page and escape(report.summary) in page
    for rule in report.rules:
        assert f'<strong class="rule">{rule.rule}</strong>' in page and escape(rule.reason) in page
        assert rule.todo is None or escape(rule.todo) in page
    for name, location in LOCATIONS.items():
        assert f'<th scope="col">{name}</th>' in page and location in page
    assert "run opsctl keys rotate" in page
    assert "400d old" in page and "pack 3f2a is damaged" in page and "3 of 10 parts read this cycle" in page
    assert "21m" in page and "2h old" in page and "COMPLIANCE mode, 30 days" in page
    assert "opsctl report verify FILE" in page and report.sha256 in page


def test_a_healthy_policy_gives_a_passed_page(policy):
    report = report_of(policy, healthy=True)
    assert report.verdict == "PASS", [(r.rule, r.status, r.reason) for r in report.rules]
    page = compliance.render_html(report.to_json())
    assert '<h1 id="verdict">Compliance PASS</h1>' in page and 'class="bad"' not in page


def test_a_target_that_did_not_answer_is_shown_with_its_reason(policy):
    looks = {"local": Look(True, snapshots=12, newest={"crm": NOW - timedelta(hours=2)}),
             "nas": Look(True, snapshots=12, newest={"crm": NOW - timedelta(hours=2)}),
             "offsite": Look(False, error="connection timed out", hint="check the network to s3.example")}
    report = report_of(policy, healthy=True, looks=looks)
    page = visible(compliance.render_html(report.to_json()))
    assert report.mode == "online" and "asking each target at that moment" in page
    assert "NO: connection timed out" in page and "check the network to s3.example" in page


def test_the_same_report_renders_the_same_bytes_also_after_its_json_round_trip(policy):
    report = report_of(policy, healthy=False).to_json()
    page = compliance.render_html(report)
    assert compliance.render_html(report) == page
    assert compliance.render_html(json.loads(sealed.embed(report))) == page  # what report verify re-renders


def test_written_compliance_reports_check_intact(policy, tmp_path):
    json_path, html_path = compliance.write(report_of(policy, healthy=False), tmp_path / "reports")
    assert json_path.parent.stat().st_mode & 0o777 == 0o700
    assert re.fullmatch(r"compliance-\d{8}T\d{6}Z-crm-prod-[0-9a-f]{8}", json_path.stem)
    assert html_path.stem == json_path.stem
    for path in (json_path, html_path):
        check = sealed.check_file(path)
        assert check.intact and "compliance verdict FAIL" in check.message, check.message


def test_many_databases_in_any_order_still_check_intact(tmp_path):
    # The JSON is embedded with sorted keys: a page that walked the per-database dict would render them in
    # another order when report verify re-renders it.
    policy = write_policy(tmp_path, {"engine": "postgresql", "host": "db.internal", "user": "backup",
                                     "names": ["zeta", "alpha"]})
    report = compliance.build(document(picture(policy, history(policy, healthy=True), NOW, None)))
    _, html_path = compliance.write(report, tmp_path / "reports")
    page = html_path.read_text()
    assert page.index("Database zeta:") < page.index("Database alpha:")
    check = sealed.check_file(html_path)
    assert check.intact, check.message


def test_a_failed_page_edited_to_pass_is_altered(policy, tmp_path):
    json_path, html_path = compliance.write(report_of(policy, healthy=False), tmp_path)
    page = html_path.read_text()
    html_path.write_text(page.replace("Compliance FAIL</h1>", "Compliance PASS</h1>"))
    check = sealed.check_file(html_path)
    assert not check.intact and "differs from what its embedded report renders" in check.message
    document_ = json.loads(json_path.read_text())
    document_["verdict"] = "PASS"
    json_path.write_text(json.dumps(document_, sort_keys=True, indent=2))
    check = sealed.check_file(json_path)
    assert not check.intact and check.message.startswith("ALTERED")


def test_a_resealed_report_of_the_wrong_shape_is_not_taken_for_a_page(policy, tmp_path):
    # Someone who edits the JSON and recomputes the hash: the page no longer matches what opsctl renders.
    _, html_path = compliance.write(report_of(policy, healthy=False), tmp_path)
    report = sealed.embedded_report(html_path.read_text())
    forged = sealed.seal({k: v for k, v in report.items() if k not in ("sha256", "rules")})
    html_path.write_text(html_path.read_text().replace(sealed.embed(report), sealed.embed(forged)))
    assert not sealed.check_file(html_path).intact


def bare_target(name: str = "usb", location: str = "local /media/usb") -> TargetState:
    """A target status knows nothing about: never reached, never backed up, verified, checked or read."""
    return TargetState(name=name, location=location, kind="local", media="disk", offsite=False, offline=False,
                       reachable=None)


def test_a_target_nothing_is_known_about_reads_never_and_unknown_not_none(policy):
    pic = Picture(policy, NOW, False, (bare_target(),), None)
    report = compliance.build(document(pic))
    page = visible(compliance.render_html(report.to_json()))
    for word in ("None", "True", "False", "null", "undefined"):
        assert word not in page, word
    assert "never verified" in page and "none recorded" in page and "not asked (offline check)" in page
    assert "unknown (lock not read)" in page and "No disaster-recovery drill is recorded" in page
    assert ">never</td>" in page and ">unknown</td>" in page


def test_names_locations_and_messages_are_escaped(policy):
    hostile = '<script>alert("x")</script>&'
    target = TargetState(name=hostile, location=f"s3 {hostile}", kind="s3", media="object storage", offsite=True,
                         offline=False, reachable=False, error=hostile, hint=hostile)
    report = compliance.build(document(Picture(policy, NOW, True, (target,), None)))
    page = visible(compliance.render_html(report.to_json()))
    assert "<script>" not in page and page.count("&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&amp;") >= 4
    assert "</script>" not in sealed.embed(report.to_json())


def test_build_refuses_another_format_and_keys_opsctl_sets_itself(policy):
    given = document(Picture(policy, NOW, False, (bare_target(),), None))
    with pytest.raises(ValueError, match="format"):
        compliance.build({**given, "format": "opsctl-drill/1"})
    with pytest.raises(ValueError, match="finished_at"):
        compliance.build({**given, "finished_at": "2020-01-01T00:00:00+00:00"})
    with pytest.raises(ValueError, match="ComplianceReport"):
        compliance.build({k: v for k, v in given.items() if k != "targets"})


def test_a_rule_nobody_described_is_shown_by_its_name_alone(policy):
    report = report_of(policy, healthy=True).to_json()
    renamed = sealed.seal({k: v for k, v in report.items() if k != "sha256"}
                          | {"rules": [{**report["rules"][0], "rule": "4-3-2"}]})
    page = visible(compliance.render_html(renamed))
    assert '<strong class="rule">4-3-2</strong><br><span class="muted"></span>' in page


RULE = {"rule": "3-2-1", "required": True, "status": "FAIL", "reason": "2 copies (live database, local)",
        "todo": "add a target"}
RUN = {"ok": False, "at": "2026-12-01T11:00:00+00:00", "age_s": 3600.0, "error": "pack <b> damaged", "read": "5%"}
KNOWN = {"target": "local", "location": "local /r", "kind": "local", "media": "disk", "offsite": False,
         "offline": True, "reachable": False, "error": "gone", "hint": "mount it", "snapshots": 1234,
         "newest_snapshot_at": "2026-12-01T10:00:00+00:00", "newest_snapshot_age_s": 7200.0,
         "newest_verified_at": "2026-11-01T10:00:00+00:00", "newest_verified_age_s": 2599200.0,
         "databases": {"zeta": {"newest_snapshot_at": "z1", "newest_verified_at": None},
                       "alpha": {"newest_snapshot_at": "a1", "newest_verified_at": "a2"}},
         "last_verification": RUN, "last_check": {**RUN, "ok": True, "error": None, "cycle": "15%"},
         "immutable": True, "lock": "COMPLIANCE, 30 days", "lock_hint": None, "locked_until": "2026-12-31",
         "key_created": "2025-01-01T00:00:00+00:00", "key_age_s": 29000000.0}
UNKNOWN = {**dict.fromkeys(KNOWN), "target": "usb", "location": "local /media/usb", "kind": "local",
           "media": "disk", "offsite": False, "offline": False, "databases": {}, "immutable": False,
           "lock_hint": "keep it offline"}
FIXED = {"format": FORMAT, "policy": "p<b>", "verdict": "FAIL", "summary": "Not proven protected: x",
         "mode": "online", "checked_at": "2026-12-01T12:00:00+00:00", "databases": ["zeta", "alpha"],
         "objectives": {"rpo_s": 86400.0, "max_key_age_s": 31536000.0, "drill_max_age_s": 3024000.0},
         "rules": [RULE, {**RULE, "rule": "drill", "required": False, "status": "UNKNOWN", "todo": None}],
         "targets": [KNOWN, UNKNOWN],
         "drill": {"ok": True, "at": "2026-11-28T12:00:00+00:00", "age_s": 259200.0, "target": "local",
                   "rto_s": 1260.0, "rpo_s": None, "error": None},
         "finished_at": "2026-12-01T12:00:01+00:00", "host": "h", "user": "u", "opsctl_version": "0.2.0"}
# A page as this version writes it; re-rendering it must give the same bytes, or `opsctl report verify` would call
# every compliance page written so far ALTERED. Change the page only together with a new FORMAT.
PAGE_SHA256 = "e7995a8d264acdbfc784c3b0e8de7a7e7e163b15f298f4faee0f676a45bbbe8e"


def test_compliance_pages_render_exactly_as_before():
    page = compliance.render_html(sealed.seal(FIXED))
    assert hashlib.sha256(page.encode()).hexdigest() == PAGE_SHA256
