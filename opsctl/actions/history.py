"""Past drills and restores, read back from the audit trail: drill --history, trends and restore estimates."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

from opsctl import audit

TREND_LENGTH = 20


@dataclass(frozen=True)
class Estimate:
    seconds: float | None
    basis: str


def audit_log(state_dir: Path) -> Path:
    return state_dir / "audit.jsonl"


def past_drills(state_dir: Path) -> list[dict]:
    """Every recorded drill, oldest first, as one flat row each."""
    rows = []
    for entry in audit.read(audit_log(state_dir), "drill"):
        details = entry.get("details") or {}
        rows.append({"time": entry.get("time"), "target": details.get("target"), "snapshots": entry.get("snapshot_ids", []),
                     "verdict": details.get("verdict", "FAILED" if entry.get("outcome") != "ok" else "?"),
                     "rto_s": details.get("rto_s"), "rpo_s": details.get("rpo_s"),
                     "rto_objective_s": details.get("rto_objective_s"), "rpo_objective_s": details.get("rpo_objective_s"),
                     "error": entry.get("error"), "report": details.get("report")})
    return rows


def trend(state_dir: Path) -> list[dict]:
    """The last drills' RTO and RPO, oldest first, for the report's chart."""
    return [{"date": row["time"], "rto_s": row["rto_s"], "rpo_s": row["rpo_s"], "verdict": row["verdict"]}
            for row in past_drills(state_dir)[-(TREND_LENGTH - 1):]]


def estimate(state_dir: Path, engine: str, size_bytes: int | None) -> Estimate:
    """How long restoring this many bytes should take, from the speed of past drills and restores here."""
    rates = []
    for entry in audit.read(audit_log(state_dir)):
        details = entry.get("details") or {}
        # A drill that missed an objective still measured how fast this machine restores.
        finished = entry.get("outcome") == "ok" or details.get("rto_s") is not None
        if entry.get("command") in ("drill", "restore") and finished \
                and details.get("engine") == engine and details.get("dump_bytes") and details.get("recovery_s"):
            rates.append(details["dump_bytes"] / details["recovery_s"])
    rates = rates[-5:]
    if not rates:
        return Estimate(None, "no drill or restore has been recorded on this machine yet; opsctl drill measures it")
    if not size_bytes:
        return Estimate(None, "the snapshot's size is unknown")
    plural = "s" if len(rates) > 1 else ""
    return Estimate(size_bytes / statistics.median(rates),
                    f"from the speed of the last {len(rates)} {engine} drill{plural}/restore{plural} on this machine")
