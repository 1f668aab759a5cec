"""The HTML verification report renders in a real browser (Debian's headless Chromium): not blank, verdict shown."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from contextlib import closing

from tests.conftest import require
from tests.support.verification import reports, verify

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run")


def test_html_report_renders_with_its_verdict(workspace, tmp_path):
    require(shutil.which("chromium") is not None, "chromium (Debian package chromium)")
    from PIL import Image

    with closing(sqlite3.connect(workspace.root / "crm.sqlite3")) as conn, conn:
        conn.execute("CREATE TABLE customers (name TEXT)")
        conn.executemany("INSERT INTO customers VALUES (?)", [("a",), ("b",)])
    workspace.write_policy({"engine": "sqlite", "path": "crm.sqlite3"})
    assert workspace.opsctl("init").returncode == 0
    assert workspace.opsctl("backup").returncode == 0
    assert verify(workspace).returncode == 0
    page = next(p for p in reports(workspace) if p.suffix == ".html")
    assert "Verification PASSED" in page.read_text()

    shot = tmp_path / "report.png"
    base = ["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    subprocess.run([*base, f"--screenshot={shot}", "--window-size=1200,1600", page.as_uri()],
                   capture_output=True, timeout=120, check=True)
    with Image.open(shot) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert image.size == (1200, 1600)
    assert colours is None or len(colours) > 10, "the screenshot is blank"
    dom = subprocess.run([*base, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120, check=True)
    assert "Verification PASSED" in dom.stdout
