"""The layers point one way (cli -> actions -> the rest): a lower layer never loads a higher one at run time."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.workspace import REPO_ROOT

LOWER = ["opsctl.reports.console", "opsctl.reports.progress", "opsctl.reports.recovery_view",
         "opsctl.reports.verification", "opsctl.reports.drill", "opsctl.audit", "opsctl.audit.runs", "opsctl.sources",
         "opsctl.targets", "opsctl.restic", "opsctl.policy", "opsctl.notify", "opsctl.schedule.units",
         "opsctl.schedule.systemd", "opsctl.compliance.picture", "opsctl.compliance.rules",
         "opsctl.compliance.document", "opsctl.compliance.metrics", "opsctl.reports.compliance",
         "opsctl.reports.compliance_view", "opsctl.reports.signing"]


@pytest.mark.parametrize("module", LOWER)
def test_a_lower_layer_does_not_load_actions_or_the_cli(module):
    loaded = subprocess.run([sys.executable, "-c", f"import sys, {module}; print(sorted(sys.modules))"],
                            cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout
    assert "opsctl.actions" not in loaded and "opsctl.cli" not in loaded, module


COMPLIANCE = ["opsctl.compliance.rules", "opsctl.compliance.document", "opsctl.compliance.metrics"]


@pytest.mark.parametrize("module", COMPLIANCE)
def test_compliance_does_not_load_the_views(module):
    """compliance decides, reports present: the page and the terminal view read the compliance document, not back."""
    loaded = subprocess.run([sys.executable, "-c", f"import sys, {module}; print(sorted(sys.modules))"],
                            cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout
    assert "opsctl.reports" not in loaded, module
