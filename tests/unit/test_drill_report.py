"""Drill reports: sealed files that show any change, a readable page, the trend chart, durations people read."""

from __future__ import annotations

import hashlib
import json
import re

import pytest

from opsctl.actions.verify import report_content
from opsctl.reports import drill, sealed, verification
from opsctl.reports.records import DrillReport

TREND = [{"date": "2026-10-01T03:00:00+00:00", "rto_s": 3000.0, "rpo_s": 7000.0, "verdict": "PASSED"},
         {"date": "2026-11-01T03:00:00+00:00", "rto_s": 9000.0, "rpo_s": 8000.0, "verdict": "PASSED"},
         {"date": "2026-11-22T03:00:00+00:00", "rto_s": 18720.0, "rpo_s": 11400.0, "verdict": "FAILED"}]
DATABASE = {"database": "crm", "engine": "postgresql", "snapshot_id": "abcd1234",
            "snapshot_time": "2026-11-22T00:00:00Z",
            "dump_bytes": 1234, "manifest_sha256": "ab" * 32, "tables": 12, "rows": 1000, "verdict": "PASSED",
            "error": None, "hint": None, "problems": [], "phases": [{"name": "restore", "seconds": 10.0, "share": 1.0}]}


def content(**changes) -> dict:
    base = {"verdict": "FAILED", "summary": "Restored from offsite and verified in 5h12m; RTO 5h12m exceeds 4h.",
            "policy": "crm-prod", "target": "offsite", "location": "s3 http://127.0.0.1:9000/bucket/prefix",
            "offsite": True, "started_at": "2026-11-22T03:00:00+00:00", "restic_version": "restic 0.14.0",
            "objectives": {"rto_s": 14400.0, "rpo_s": 86400.0}, "measured": {"rto_s": 18720.0, "rpo_s": 11400.0},
            "met": {"rto": False, "rpo": True},
            "phases": [{"name": "fetch", "seconds": 3744.0, "share": 0.2}, {"name": "restore", "seconds": 14976.0,
                                                                           "share": 0.8}],
            "databases": [DATABASE], "advice": ["the restore phase is 80% of the RTO; consider a faster disk"],
            "trend": TREND}
    return {**base, **changes}


def test_build_adds_the_seal_and_keeps_the_given_keys():
    given = content()
    report = drill.build(given).to_json()
    assert {k: report[k] for k in given} == given
    assert report["format"] == drill.FORMAT and report["sha256"] == sealed.content_sha256(
        sealed.hashed_content(report))
    assert report["signature"] is None  # no signer: unsigned, and its page says so


def test_build_names_missing_keys():
    with pytest.raises(ValueError, match="trend"):
        drill.build({k: v for k, v in content().items() if k != "trend"})


def test_written_drill_reports_check_intact(tmp_path):
    json_path, html_path = drill.write(drill.build(content()), tmp_path / "reports")
    assert json_path.parent.stat().st_mode & 0o777 == 0o700
    assert re.fullmatch(r"drill-\d{8}T\d{6}Z-crm-prod-[0-9a-f]{8}", json_path.stem) and html_path.stem == json_path.stem
    for path in (json_path, html_path):
        check = sealed.check_file(path)
        assert check.intact and "drill verdict FAILED" in check.message, check.message


def test_a_changed_measurement_in_the_json_is_altered(tmp_path):
    json_path, _ = drill.write(drill.build(content()), tmp_path)
    report = json.loads(json_path.read_text())
    report["measured"]["rto_s"] = 3600.0
    json_path.write_text(json.dumps(report, sort_keys=True, indent=2))
    check = sealed.check_file(json_path)
    assert not check.intact and check.message.startswith("ALTERED")


def test_a_failed_drill_page_edited_to_look_passed_is_altered(tmp_path):
    _, html_path = drill.write(drill.build(content()), tmp_path)
    page = html_path.read_text()
    html_path.write_text(page.replace('<h1 id="verdict">Drill FAILED', '<h1 id="verdict">Drill PASSED'))
    check = sealed.check_file(html_path)
    assert not check.intact and "differs from what its embedded report renders" in check.message


def test_the_page_shows_the_failure_and_what_to_do():
    page = drill.render_html(drill.build(content()).to_json())
    assert '<h1 id="verdict">Drill FAILED</h1>' in page and "consider a faster disk" in page and "MISSED" in page


def test_the_page_escapes_names_and_error_text():
    hostile = "<script>alert(1)</script>"
    failed = {**DATABASE, "verdict": "FAILED", "error": hostile, "problems": [hostile]}
    page = drill.render_html(drill.build(content(policy=hostile, databases=[failed])).to_json())
    visible = page.split('<script type="application/json" id="opsctl-report">')[0]
    assert "<script>" not in visible and visible.count("&lt;script&gt;") >= 3


def test_a_verification_report_still_checks_intact(tmp_path):
    about = {"policy": "p", "database": "crm", "engine": "sqlite", "started_at": "s", "restic_version": "restic"}
    for path in verification.write(verification.build(report_content(about, [], all_targets=False)), tmp_path):
        check = verification.check_file(path)
        assert check.intact and "(verdict PASSED," in check.message, check.message


# A verification page written before drill reports existed; re-rendering it must give the same bytes,
# or `opsctl report verify` would call every existing page ALTERED.
OLD_PAGE_SHA256 = "c93cb9a06b6f640fa90d68ec09e00ca571bb7082562994613adf864aac8b1965"


def test_verification_pages_render_exactly_as_before():
    target = {"target": "local", "location": "local /r", "snapshot_id": "abcd1234", "snapshot_time": "t",
              "manifest_sha256": "m", "dump_bytes": 1, "server_version": "3", "repository": "no errors",
              "verdict": "FAILED", "error": "<script>e</script>", "hint": "h", "problems": ["p1"], "started_at": "s",
              "duration_s": 1.5, "tables": [{"name": "t", "rows_expected": 1000, "rows_actual": None,
                                             "fingerprint": "match", "seconds": 0.1, "ok": False}]}
    report = sealed.seal({
        "format": verification.FORMAT, "verdict": "FAILED", "summary": "The backup could not be proven: x",
        "policy": "p<b>", "database": "crm", "engine": "sqlite", "started_at": "2026-01-01T00:00:00+00:00",
        "restic_version": "restic 0.14.0", "finished_at": "2026-01-01T00:01:00+00:00", "host": "h", "user": "u",
        "opsctl_version": "0.1.0", "all_targets": True, "targets_identical": False, "targets": [target]})
    assert hashlib.sha256(verification.render_html(report).encode()).hexdigest() == OLD_PAGE_SHA256


def test_a_json_file_of_another_kind_is_not_a_report(tmp_path):
    path = tmp_path / "other.json"
    path.write_text(json.dumps({"format": "something/1", "sha256": "00"}))
    assert not sealed.check_file(path).intact


def test_the_trend_chart_marks_each_drill_against_the_objective():
    svg = drill.trend_svg(TREND, "rto_s", 14400.0)
    points = re.findall(r'<circle class="point"[^>]*>', svg)
    assert len(points) == 3 and 'class="objective"' in svg and "objective 4h" in svg
    assert ['#b3261e' in p for p in points] == [False, False, True]  # only 5h12m is over 4h
    assert 'r="5"' in points[-1] and "2026-10-01" in svg and "2026-11-22" in svg


def test_the_trend_chart_skips_a_drill_that_measured_nothing():
    svg = drill.trend_svg([TREND[0], {**TREND[1], "rto_s": None}, TREND[2]], "rto_s", 14400.0)
    assert svg.count('<circle class="point"') == 2
    assert len(re.search(r'<polyline points="([^"]*)"', svg).group(1).split()) == 2


def test_a_single_drill_charts_one_point_without_a_line():
    svg = drill.trend_svg(TREND[-1:], "rpo_s", 86400.0)
    assert svg.count('<circle class="point"') == 1 and "<polyline" not in svg and "objective 1d" in svg


@pytest.mark.parametrize(("seconds", "text"), [(0.4, "0.4s"), (42, "42s"), (312, "5m12s"), (300, "5m"),
                                           (18720, "5h12m"), (14400, "4h"), (273600, "3d4h"), (59.6, "1m")])
def test_durations_read_like_people_write_them(seconds, text):
    assert drill.human_duration(seconds) == text


def test_a_report_read_back_is_the_document_that_was_sealed():
    report = drill.build(content())
    again = DrillReport.of(json.loads(json.dumps(report.to_json())))
    assert again.to_json() == report.to_json() and sealed.content_sha256(
        sealed.hashed_content(again.to_json())) == again.sha256
    assert again.measured.rto_s == report.measured.rto_s and again.databases[0].database == DATABASE["database"]


def test_an_older_report_without_newer_fields_still_reads():
    document = drill.build(content()).to_json()
    document["databases"] = [{k: v for k, v in row.items() if k != "notes"} for row in document["databases"]]
    assert DrillReport.of(document).databases[0].notes == ()
    with pytest.raises(ValueError, match="DrillReport"):
        DrillReport.of({"verdict": "PASSED"})
