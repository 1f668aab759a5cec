"""opsctl check: restic check on every target at once, a verdict per target."""

from __future__ import annotations

from dataclasses import dataclass

from opsctl.actions.context import App, Session, as_operator_error, exit_code_for, outcome_for
from opsctl.errors import ExitCode
from opsctl.reports import console


@dataclass(frozen=True)
class CheckRow:
    target: str
    location: str
    ok: bool
    summary: str
    hint: str | None = None
    read_data_subset: str | None = None


def check(app: App, read_data_subset: str | None = None, target_name: str | None = None) -> ExitCode:
    session = Session(app)
    with session.exclusive("check"), session.audited("check") as record:
        _ = session.restic.version
        session.read_secrets(database=False)
        rows = session.on_each_target(target_name, lambda c: _check_one(session, c, read_data_subset))
        failed = sum(not r.ok for r in rows)
        code = exit_code_for(len(rows) - failed, failed)
        record.outcome = outcome_for(code)
        record.targets = [r.location for r in rows]
        record.details = {r.target: "ok" if r.ok else r.summary for r in rows}
    console.show_check(app, rows)
    return code


def _check_one(session: Session, config, read_data_subset: str | None) -> CheckRow:
    location = config.name
    try:
        target = session.target(config)
        location = target.display
        target.probe()
        result = session.restic.check(session.repository(target), read_data_subset)
    except Exception as exc:  # noqa: BLE001 - one target's failure is its row, the others go on
        error = as_operator_error(exc, location)
        return CheckRow(config.name, location, False, error.message, error.hint, read_data_subset)
    if result.ok:
        scope = f"structure and {read_data_subset} of the data read back" if read_data_subset else "structure"
        return CheckRow(config.name, location, True, f"no errors ({scope})", read_data_subset=read_data_subset)
    return CheckRow(config.name, location, False, f"the repository is damaged: {first_error(result.report)}",
                    DAMAGED_HINT, read_data_subset)


DAMAGED_HINT = ("restore from another target meanwhile and do not prune this one; if it is a replica, remove "
                "the damaged pack file named above from it and the next backup copies a good one")


def first_error(report: str) -> str:
    """The first line of a restic check report that says what is wrong."""
    lines = [line.strip() for line in report.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower() or "does not match" in line.lower()
              or "not found" in line.lower()]
    return (errors or lines or ["restic check failed"])[0][:300]
