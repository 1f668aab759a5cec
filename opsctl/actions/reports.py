"""opsctl report verify / list: check a verification, drill or compliance report, list past verifications."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from opsctl import audit
from opsctl.actions.context import App, Session
from opsctl.actions.outcome import AuditFacts, Outcome
from opsctl.actions.runner import Command
from opsctl.errors import BadInput, ExitCode
from opsctl.reports import console, sealed, verification
from opsctl.reports.sealed import ReportCheck


@dataclass(frozen=True)
class ReportChecked(Outcome):
    """Whether a report is as opsctl wrote it, and whether the audit trail recorded it."""

    check: ReportCheck

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.OK if self.check.intact else ExitCode.FAILURE

    def to_json(self) -> dict[str, Any]:
        return {"file": str(self.check.path), "intact": self.check.intact, "audit_trail": self.check.audit,
                "message": self.check.message}

    def audit(self) -> AuditFacts:
        return AuditFacts(error=None if self.check.intact else self.check.message,
                          details={"file": str(self.check.path), "intact": self.check.intact})

    def show(self, app: App) -> None:
        console.show_report_check(app, self.check)


def _check_report(session: Session, path: Path) -> ReportChecked:
    """Intact only when the file is as opsctl wrote it and the policy's audit trail records it."""
    result = _unsealed(path)
    if result.intact:
        result = _against_audit_trail(session, result)
    return ReportChecked(result)


def _unsealed(path: Path) -> ReportCheck:
    try:
        found = path.is_file()
    except OSError as exc:  # e.g. a name longer than the system allows
        raise BadInput(f"cannot look at {path}: {exc.strerror or exc.__class__.__name__}",
                       "give the path of a report: opsctl report list shows verifications") from None
    if not found:
        raise BadInput(f"there is no file {path}", "give the path of a report: opsctl report list shows "
                                                   "verifications, opsctl drill --history shows drills, and "
                                                   "compliance pages are kept in the state folder's reports/")
    return sealed.check_file(path)


def _no_policy(path: Path) -> ReportChecked:
    """Without the policy that wrote it, a report can be found altered, never proven intact."""
    checked = _unsealed(path)
    if not checked.intact:
        return ReportChecked(checked)
    raise BadInput(f"{path} matches its own SHA-256, but whoever edits a report can recompute that: "
                   "only the audit trail of the policy that wrote it can tell whether it was altered",
                   "run: opsctl --policy FILE report verify REPORT (FILE: the policy that wrote the report)")


def _against_audit_trail(session: Session, result: ReportCheck) -> ReportCheck:
    """The report's hash must be one the policy's own runs recorded: a recomputed hash is not."""
    trail = audit.trail_path(session.state_dir)
    try:
        entries = audit.read(trail)
    except OSError as exc:
        raise BadInput(f"cannot read the audit trail {trail} ({exc.strerror or exc.__class__.__name__})",
                       "run report verify as the user that runs the backups: the trail is private to it") from None
    entry = next((e for e in reversed(entries) if e.details.get("report_sha256") == result.sha256
                  and e.details.get("verdict") == result.verdict), None)
    if entry is None:
        return replace(result, intact=False, audit="not recorded", message=(
            f"ALTERED or foreign: {result.path} matches its own SHA-256, but no run in the audit trail {trail} "
            f"recorded that SHA-256 with the verdict {result.verdict}. It was edited and re-hashed, or another policy "
            "or host wrote it (check it with that policy's --policy), or the trail lost that run's line "
            "(truncated or replaced: the run then warned that it could not write it)"))
    return replace(result, audit="recorded", message=f"{result.message}; the audit trail recorded it "
                                                     f"({entry.command} on {entry.time} by {entry.user}@{entry.host})")


@dataclass(frozen=True)
class ReportList(Outcome):
    reports: tuple[verification.PastVerification, ...]

    def show(self, app: App) -> None:
        console.show_report_list(app, list(self.reports))


def _list_reports(session: Session, _: None) -> ReportList:
    return ReportList(tuple(verification.list_reports(session.state_dir / "reports")))


REPORT_VERIFY = Command("report verify", _check_report, without_policy=_no_policy)
REPORT_LIST = Command("report list", _list_reports)
