"""opsctl report verify / list: check a verification or drill report, list past verifications."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from opsctl import audit
from opsctl.actions.context import DEFAULT_POLICY_PATHS, App, Session
from opsctl.actions.history import audit_log
from opsctl.errors import BadInput, ExitCode
from opsctl.reports import console, sealed, verification
from opsctl.reports.sealed import ReportCheck


def check_report(app: App, path: Path) -> ExitCode:
    """Exit 0 when the file is as opsctl wrote it and the policy's audit trail records it; 1 when not; 2 without a policy."""
    if not path.is_file():
        raise BadInput(f"there is no file {path}", "give the path of a report: opsctl report list shows "
                                                   "verifications, opsctl drill --history shows drills")
    result = sealed.check_file(path)
    if result.intact:
        result = _against_audit_trail(app, result)
    console.show_report_check(app, result)
    return ExitCode.OK if result.intact else ExitCode.FAILURE


def _against_audit_trail(app: App, result: ReportCheck) -> ReportCheck:
    """The report's hash must be one the policy's own runs recorded: a recomputed hash is not."""
    if app.policy_path is None and not any(p.exists() for p in DEFAULT_POLICY_PATHS):
        raise BadInput(f"{result.path} matches its own SHA-256, but whoever edits a report can recompute that: "
                       "only the audit trail of the policy that wrote it can tell whether it was altered",
                       "run: opsctl --policy FILE report verify REPORT (FILE: the policy that wrote the report)")
    trail = audit_log(Session(app).state_dir)
    try:
        entries = audit.read(trail)
    except OSError as exc:
        raise BadInput(f"cannot read the audit trail {trail} ({exc.strerror or exc.__class__.__name__})",
                       "run report verify as the user that runs the backups: the trail is private to it") from None
    entry = next((e for e in reversed(entries) if isinstance(e.get("details"), dict)
                  and e["details"].get("report_sha256") == result.sha256
                  and e["details"].get("verdict") == result.verdict), None)
    if entry is None:
        return replace(result, intact=False, audit="not recorded", message=(
            f"ALTERED or foreign: {result.path} matches its own SHA-256, but no run in the audit trail {trail} "
            f"recorded that SHA-256 with the verdict {result.verdict}. It was edited and re-hashed, or another policy "
            "or host wrote it (check it with that policy's --policy), or the trail lost that run's line "
            "(truncated or replaced: the run then warned that it could not write it)"))
    return replace(result, audit="recorded", message=f"{result.message}; the audit trail recorded it "
                                                     f"({entry.get('command')} on {entry.get('time')} by "
                                                     f"{entry.get('user')}@{entry.get('host')})")


def list_reports(app: App) -> ExitCode:
    session = Session(app)
    console.show_report_list(app, verification.list_reports(session.state_dir / "reports"))
    return ExitCode.OK
