"""opsctl report verify / list: check a verification or drill report, list past verifications."""

from __future__ import annotations

from pathlib import Path

from opsctl.actions.context import App, Session
from opsctl.errors import BadInput, ExitCode
from opsctl.reports import console, sealed, verification


def check_report(app: App, path: Path) -> ExitCode:
    """Exit 0 when the file is as opsctl wrote it, 1 when it was altered."""
    if not path.is_file():
        raise BadInput(f"there is no file {path}", "give the path of a report: opsctl report list shows "
                                                   "verifications, opsctl drill --history shows drills")
    result = sealed.check_file(path)
    console.show_report_check(app, result)
    return ExitCode.OK if result.intact else ExitCode.FAILURE


def list_reports(app: App) -> ExitCode:
    session = Session(app)
    console.show_report_list(app, verification.list_reports(session.state_dir / "reports"))
    return ExitCode.OK
