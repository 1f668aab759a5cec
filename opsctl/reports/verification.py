"""Verification reports: what `opsctl verify` proved about each target, sealed as a JSON and HTML pair.

Sealing, writing and checking are shared with drill reports in `sealed`; the names re-exported
here keep existing callers working.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opsctl.reports import sealed
from opsctl.reports.records import VerificationReport
from opsctl.reports.sealed import FAILED, PASSED, ReportCheck, check_file, content_sha256, now  # noqa: F401

if TYPE_CHECKING:  # types only: at run time reports never import actions (actions -> reports)
    from opsctl.actions.fingerprint_check import TableCheck
    from opsctl.actions.verify import TargetVerification

FORMAT = "opsctl-verification/1"


@dataclass(frozen=True)
class PastVerification:
    """One line of `opsctl report list`."""

    date: str
    database: str
    targets: tuple[str, ...]
    snapshots: tuple[str, ...]
    verdict: str
    file: str


def build(about: dict[str, Any], results: Sequence[TargetVerification], all_targets: bool) -> VerificationReport:
    """The report (content plus its sha256) from the per-target results; `about` names policy, database, tools."""
    targets = [_target(r) for r in results]
    identical = _identical(results) if all_targets and len(results) > 1 else None
    passed = all(r.ok for r in results) and identical is not False
    content = {
        "format": FORMAT, "verdict": PASSED if passed else FAILED, "summary": _summary(results, passed, identical),
        **about, "all_targets": all_targets, "targets_identical": identical, "targets": targets,
    }
    return VerificationReport.of(sealed.seal(sealed.stamp(content)))


def write(report: VerificationReport, folder: Path) -> tuple[Path, Path]:
    """The JSON and HTML files, named by time, database and hash; returns (json, html)."""
    return sealed.write_pair(report.to_json(), folder, "verify", report.database, render_html)


def render_html(report: dict[str, Any]) -> str:
    """The HTML page for a report; the same report always gives the same bytes."""
    return sealed.template("verification.html.j2").render(r=report, embedded=sealed.embed(report))


def list_reports(folder: Path) -> list[PastVerification]:
    """Past verifications, oldest first; a file that is not a verification report is passed over."""
    rows = []
    for path in sorted(folder.glob("verify-*.json")) if folder.is_dir() else ():
        document = sealed.loads(path.read_text(encoding="utf-8", errors="replace"))
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            continue
        try:
            report = VerificationReport.of(document)
        except ValueError:
            continue
        rows.append(PastVerification(report.finished_at, report.database, tuple(t.target for t in report.targets),
                                     tuple(sorted({t.snapshot_id or "-" for t in report.targets})), report.verdict,
                                     str(path)))
    return sorted(rows, key=lambda row: row.date)


def _target(result: TargetVerification) -> dict[str, Any]:
    tables = result.comparison.tables if result.comparison else ()
    return {
        "target": result.target, "location": result.location, "snapshot_id": result.snapshot_id,
        "snapshot_time": result.snapshot_time, "manifest_sha256": result.manifest_sha256,
        "dump_bytes": result.dump_bytes, "server_version": result.server_version, "repository": result.repository,
        "verdict": PASSED if result.ok else FAILED, "error": result.error, "hint": result.hint,
        "problems": list(result.comparison.problems) if result.comparison else [],
        "notes": list(result.comparison.notes) if result.comparison else [],
        "started_at": result.started_at, "duration_s": result.duration_s,
        "tables": [{"name": t.name, "rows_expected": t.rows_expected, "rows_actual": t.rows_actual,
                    "fingerprint": _fingerprint_word(t),
                    "seconds": t.seconds, "ok": t.ok} for t in tables],
    }


def _fingerprint_word(table: TableCheck) -> str:
    if not table.comparable:
        return "row count only (not comparable)"
    return {True: "match", False: "MISMATCH", None: "not compared"}[table.fingerprint_match]


def _identical(results: Sequence[TargetVerification]) -> bool:
    hashes = {r.manifest_sha256 for r in results}
    return len(hashes) == 1 and None not in hashes


def _first_problem(result: TargetVerification) -> str:
    """Why a target did not pass: its error, else its comparison's first problem (a failed one has either)."""
    if result.error or result.comparison is None:
        return result.error or "not proven"
    return result.comparison.problems[0]


def _summary(results: Sequence[TargetVerification], passed: bool, identical: bool | None) -> str:
    if passed:
        comparisons = [r.comparison for r in results if r.comparison is not None]  # passed: every target has one
        tables = sum(len(c.tables) for c in comparisons)
        where = f"{len(results)} targets, byte-identical backups" if identical else "1 target"
        partly = sum(len(c.tables) - c.proven for c in comparisons)
        if partly:
            return (f"The restored database matches the backup: {tables} table checks, {partly} of them by row count "
                    f"or presence only (see the notes), schema and values match ({where}).")
        return f"The restored database equals the backup: {tables} table checks, schema and values match ({where})."
    first = next((_first_problem(r) for r in results if not r.ok), None)
    if first is None:
        return "The targets hold different backups: their manifests' SHA-256 differ."
    return f"The backup could not be proven: {first}"
