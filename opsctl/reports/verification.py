"""Verification reports: what `opsctl verify` proved about each target, sealed as a JSON and HTML pair.

Sealing, writing and checking are shared with drill reports in `sealed`; the names re-exported
here keep existing callers working.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opsctl.reports import sealed
from opsctl.reports.records import VerificationReport
from opsctl.reports.sealed import FAILED, PASSED, ReportCheck, check_file, content_sha256, now  # noqa: F401

if TYPE_CHECKING:
    from opsctl.reports.signing import Signer

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


def build(content: dict[str, Any], signer: Signer | None = None) -> VerificationReport:
    """The sealed report: the action's content plus when, where, by whom and with which opsctl it was made,
    signed when there is a signer."""
    return VerificationReport.of(sealed.sign(sealed.seal(sealed.stamp({"format": FORMAT, **content})), signer))


def write(report: VerificationReport, folder: Path, group: str | None = None) -> tuple[Path, Path]:
    """The JSON and HTML files, named by time, database and hash, readable by `group` too; returns (json, html)."""
    return sealed.write_pair(report.to_json(), folder, "verify", report.database, render_html, group=group)


def render_html(report: dict[str, Any]) -> str:
    """The HTML page for a report; the same report always gives the same bytes."""
    return sealed.template("verification.html.j2").render(r=report, signature=sealed.signature_label(report),
                                                          embedded=sealed.embed(report))


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
