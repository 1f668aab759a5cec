"""The HTML drill report renders in a real browser (Debian's headless Chromium): not blank, verdict and charts shown."""

from __future__ import annotations

from tests.support.bank import make_bank
from tests.support.browser import render
from tests.support.recovery import drill, drill_reports
from tests.support.targets import local_target


def test_html_drill_report_renders_with_its_verdict_and_trend(workspace, tmp_path):
    make_bank(workspace.root / "bank.sqlite3")
    # A second local repository stands in for the off-site copy (a USB disk taken home).
    workspace.write_policy({"engine": "sqlite", "path": "bank.sqlite3"},
                           [local_target(), local_target("usb", offsite=True)])
    assert workspace.opsctl("init").returncode == 0
    assert workspace.opsctl("backup").returncode == 0
    for _ in range(2):  # two drills: the trend chart draws a line, not a lone point
        run = drill(workspace)
        assert run.result.returncode == 0, run.result.output
    assert run.payload["target"] == "usb"
    page = drill_reports(workspace, ".html")[-1]
    assert str(page) == run.payload["files"][1]
    text = page.read_text()
    assert "Drill PASSED" in text and "<script src" not in text and "<link" not in text

    shown = render(page, tmp_path)
    assert shown.size == (1200, 1600) and not shown.blank, "the screenshot is blank"
    assert "Drill PASSED" in shown.dom
    assert shown.dom.count("<svg") >= 2 and "<polyline" in shown.dom, "both trend charts, with past drills"
    assert workspace.opsctl("report", "verify", str(page)).returncode == 0
