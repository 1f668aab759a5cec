"""The auditor's compliance page renders in a real browser (Debian's headless Chromium): not blank, the verdict
and every rule and target shown, one self-contained file that still checks intact."""

from __future__ import annotations

import pytest

from opsctl.compliance.picture import Look, picture
from opsctl.policy.compliance import RULES
from opsctl.reports import compliance, sealed
from tests.support.browser import render
from tests.unit.test_compliance_page import LOCATIONS, NOW, document, history, write_policy

ANSWERS = {"local": Look(True, snapshots=12, newest={"crm": NOW}), "nas": Look(True, snapshots=12, newest={"crm": NOW}),
           "offsite": Look(False, error="connection timed out", hint="check the network to s3.example")}


@pytest.mark.parametrize(("healthy", "looks", "verdict"), [(False, None, "FAIL"), (True, ANSWERS, "UNKNOWN")],
                         ids=["offline-fail", "online-unknown"])
def test_the_compliance_page_renders_with_its_verdict_rules_and_targets(tmp_path, healthy, looks, verdict):
    policy = write_policy(tmp_path)
    seen = picture(policy, history(policy, healthy=healthy), NOW, looks)
    _, page = compliance.write(compliance.build(document(seen)), tmp_path / "reports")
    text = page.read_text()
    assert f"Compliance {verdict}" in text
    assert not any(asset in text for asset in ("<link", "<script src", "<img", "url(", "@import")), "self-contained"

    shown = render(page, tmp_path)
    assert shown.size == (1200, 1600) and not shown.blank, "the screenshot is blank"
    assert f'<h1 id="verdict">Compliance {verdict}</h1>' in shown.dom
    for rule in RULES:
        assert f'<strong class="rule">{rule}</strong>' in shown.dom, rule
    for name, location in LOCATIONS.items():
        assert f'<th scope="col">{name}</th>' in shown.dom and location in shown.dom, name
    assert "opsctl report verify FILE" in shown.dom
    assert sealed.check_file(page).intact
