"""Unit tests run the CLI in-process; their policies name no state_dir, so state goes to a private folder."""

from __future__ import annotations

from pathlib import Path

import pytest

import opsctl.actions.context
import opsctl.policy.load
import opsctl.policy.model


@pytest.fixture(autouse=True)
def private_state_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Never the real /var/lib/opsctl or ~/.local/state: the audit lines of refusals land here instead."""
    home = tmp_path / "state-home"

    def state_dir(name: str) -> Path:
        return home / "opsctl" / name

    for module in (opsctl.policy.model, opsctl.policy.load, opsctl.actions.context):
        monkeypatch.setattr(module, "default_state_dir", state_dir)
    return home
