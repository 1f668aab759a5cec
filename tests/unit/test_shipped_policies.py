"""The policies shipped in policies/ must stay valid: the README points operators at them."""

from __future__ import annotations

import shutil

import pytest

from opsctl.policy import load_policy
from tests.support.workspace import REPO_ROOT


@pytest.mark.parametrize("name", ["reference.yaml", "demo.yaml"])
def test_shipped_policy_validates(tmp_path, name):
    shutil.copy(REPO_ROOT / "policies" / name, tmp_path / name)
    (tmp_path / "secrets").mkdir()
    for secret in ("secrets/db.pass", "secrets/restic.pass", "repository.pass", "secrets/s3.env",
                   "secrets/healthchecks.url", "secrets/webhook.key", "secrets/recovery-db.pass"):
        (tmp_path / secret).write_text("x\n")
        (tmp_path / secret).chmod(0o600)
    policy = load_policy(tmp_path / name)
    assert policy.targets
