"""Past drills and restores, read back from the audit trail: drill --history, trends and restore estimates."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import TypeGuard

from opsctl import audit

TREND_LENGTH = 20
ESTIMATE_RUNS = 10
_MIN_FIT_BYTES = 4 << 20  # below this, a run measures start-up, not speed
_MIN_FIT_RUNS = 2  # a line needs two points
_SIMILAR_SIZES = (0.5, 2)  # a past run this many times the size (or less) scales to the one asked about


@dataclass(frozen=True)
class Estimate:
    seconds: float | None
    basis: str


@dataclass(frozen=True)
class PastDrill:
    """One drill as its audit line recorded it."""

    time: str
    target: str | None
    snapshots: tuple[str, ...]
    verdict: str
    rto_s: float | None
    rpo_s: float | None
    rto_objective_s: float | None
    rpo_objective_s: float | None
    error: str | None
    report: str | None

    @classmethod
    def of(cls, entry: audit.AuditEntry) -> PastDrill:
        details = entry.details
        return cls(time=entry.time, target=_text(details.get("target")), snapshots=entry.snapshot_ids,
                   verdict=_text(details.get("verdict")) or ("FAILED" if entry.outcome != "ok" else "?"),
                   rto_s=_number(details.get("rto_s")), rpo_s=_number(details.get("rpo_s")),
                   rto_objective_s=_number(details.get("rto_objective_s")),
                   rpo_objective_s=_number(details.get("rpo_objective_s")),
                   error=entry.error, report=_text(details.get("report")))


def past_drills(state_dir: Path) -> list[PastDrill]:
    """Every drill that ran (with its report) or failed running, oldest first; a refused one is no drill."""
    return [PastDrill.of(entry) for entry in audit.read(audit.trail_path(state_dir), "drill")
            if "verdict" in entry.details or entry.outcome == "failed"]


def trend(state_dir: Path) -> list[dict[str, object]]:
    """The last drills' RTO and RPO, oldest first, for the report's chart."""
    return [{"date": row.time, "rto_s": row.rto_s, "rpo_s": row.rpo_s, "verdict": row.verdict}
            for row in past_drills(state_dir)[-(TREND_LENGTH - 1):]]


def estimate(state_dir: Path, engine: str, size_bytes: int | None) -> Estimate:
    """How long restoring this many bytes should take, from past drills and restores of this engine here.

    A restore costs a fixed part (starting tools, creating the database) plus a part per byte. With
    past runs of sizes far enough apart (the largest of some megabytes), both are fitted, and used up
    to 4x the largest run; otherwise only a run of a similar size (0.5x to 2x) is scaled. A tiny run
    says nothing about a large one, so then the answer is unknown.
    """
    runs = _recovery_runs(state_dir, engine)[-ESTIMATE_RUNS:]
    if not runs:
        return Estimate(None, "no drill or restore has been recorded on this machine yet; opsctl drill measures it")
    if not size_bytes:
        return Estimate(None, "the snapshot's size is unknown")
    fitted = _fit(runs)
    if fitted is not None and size_bytes <= 4 * max(size for size, _ in runs):
        fixed, per_byte = fitted
        return Estimate(fixed + per_byte * size_bytes,
                        f"fitted to the last {len(runs)} {engine} drills/restores on this machine")
    low, high = _SIMILAR_SIZES
    similar = [(size, seconds) for size, seconds in runs if low <= size_bytes / size <= high]
    if similar:
        rate = statistics.median(size / seconds for size, seconds in similar)
        plural = "s" if len(similar) > 1 else ""
        return Estimate(size_bytes / rate, f"from {len(similar)} {engine} drill{plural}/restore{plural} of a similar "
                                           "size on this machine")
    largest = max(size for size, _ in runs)
    smallest = min(s for s, _ in runs)
    return Estimate(None, f"past {engine} drills/restores here were of {_mib(smallest)}-{_mib(largest)}, "
                          f"too far from {_mib(size_bytes)} to scale; opsctl drill measures this size")


def _recovery_runs(state_dir: Path, engine: str) -> list[tuple[int, float]]:
    """(dump bytes, seconds moving and proving them) of every finished drill and restore of the engine."""
    runs: list[tuple[int, float]] = []
    for entry in audit.read(audit.trail_path(state_dir)):
        details = entry.details
        if entry.command not in ("drill", "restore"):
            continue
        # A drill that missed an objective still measured how fast this machine restores.
        finished = entry.outcome == "ok" or details.get("rto_s") is not None
        size, seconds = details.get("dump_bytes"), details.get("recovery_s")
        if finished and details.get("engine") == engine and _positive(size) and _positive(seconds) and size >= 1:
            runs.append((int(size), float(seconds)))
    return runs


def _positive(value: object) -> TypeGuard[int | float]:
    """A finite number above zero (the trail is a file: anything else is skipped, never trusted)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < float("inf")


def _fit(runs: list[tuple[int, float]]) -> tuple[float, float] | None:
    """Least-squares fixed seconds and seconds per byte, when the sizes are at least 4x apart and the fit is sane."""
    sizes = [size for size, _ in runs]
    if len(runs) < _MIN_FIT_RUNS or max(sizes) < 4 * min(sizes) or max(sizes) < _MIN_FIT_BYTES:
        return None
    mean_size, mean_seconds = statistics.fmean(sizes), statistics.fmean(seconds for _, seconds in runs)
    spread = sum((size - mean_size) ** 2 for size in sizes)
    per_byte = sum((size - mean_size) * (seconds - mean_seconds) for size, seconds in runs) / spread
    if per_byte <= 0:
        return None  # noise swamps the size: no trustworthy rate
    return max(0.0, mean_seconds - per_byte * mean_size), per_byte


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _mib(size: float) -> str:
    return f"{size / 2**20:,.1f} MiB"
