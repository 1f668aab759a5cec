"""The HTML verification report renders in a real browser (Debian's headless Chromium): not blank, verdict shown."""

from __future__ import annotations

import sqlite3
from contextlib import closing

from tests.support.browser import render
from tests.support.verification import reports, verify


def test_html_report_renders_with_its_verdict(workspace, tmp_path):
    with closing(sqlite3.connect(workspace.root / "crm.sqlite3")) as conn, conn:
        conn.execute("CREATE TABLE customers (name TEXT)")
        conn.executemany("INSERT INTO customers VALUES (?)", [("a",), ("b",)])
    workspace.write_policy({"engine": "sqlite", "path": "crm.sqlite3"})
    assert workspace.opsctl("init").returncode == 0
    assert workspace.opsctl("backup").returncode == 0
    assert verify(workspace).returncode == 0
    page = next(p for p in reports(workspace) if p.suffix == ".html")
    assert "Verification PASSED" in page.read_text()

    shown = render(page, tmp_path)
    assert shown.size == (1200, 1600) and not shown.blank, "the screenshot is blank"
    assert "Verification PASSED" in shown.dom
