"""Helpers for the verification tests: run verify (optionally tampering), read its reports, look for canaries."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

CANARY = "CANARY-" + uuid.uuid4().hex[:12]


def verify(workspace, *args: str, tamper: str | None = None):
    env = {"OPSCTL_TEST_TAMPER_SQL": tamper} if tamper else None
    return workspace.opsctl("--verbose", "verify", *args, env=env)


def reports(workspace) -> list[Path]:
    folder = workspace.root / "state" / "reports"
    return sorted(folder.glob("verify-*")) if folder.is_dir() else []


def latest_report(workspace) -> dict:
    newest = max((p for p in reports(workspace) if p.suffix == ".json"), key=lambda p: p.stat().st_mtime)
    return json.loads(newest.read_text())


def assert_no_canary(workspace, *outputs: str) -> None:
    """No report, audit line or message holds a value planted in the data."""
    for text in outputs:
        assert CANARY not in text
    for path in [*reports(workspace), workspace.root / "state" / "audit.jsonl"]:
        if path.exists():
            assert CANARY not in path.read_text(errors="replace"), path


def assert_detected(workspace, tamper: str, names: str, extra: tuple[str, ...] = ()) -> None:
    """verify fails (exit 1) naming the table or object, in its message and its report."""
    result = verify(workspace, *extra, tamper=tamper)
    assert result.returncode == 1, result.output
    assert names in result.stdout, result.output
    report = latest_report(workspace)
    assert report["verdict"] == "FAILED"
    assert any(names in p for t in report["targets"] for p in t["problems"]), report["targets"][0]["problems"]
