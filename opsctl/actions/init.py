"""opsctl init: create each target's repository once; an existing one is never touched."""

from __future__ import annotations

from dataclasses import dataclass

from opsctl.actions.context import App, Session, exit_code_for, outcome_for
from opsctl.errors import ExitCode, OpsctlError
from opsctl.reports import console


@dataclass(frozen=True)
class InitRow:
    target: str
    status: str = ""
    error: str | None = None
    hint: str | None = None
    bad_input: bool = False


def init(app: App, target_name: str | None = None) -> ExitCode:
    session = Session(app)
    configs = session.target_configs(target_name)
    with session.audited("init") as record:
        _ = session.restic.version
        session.read_secrets(database=False)
        rows = [_init_one(session, config) for config in configs]
        record.targets = [row.target for row in rows]
        record.details = {row.target: row.status or "failed" for row in rows}
        failed = [r for r in rows if r.error is not None]
        code = exit_code_for(len(rows) - len(failed), len(failed))
        if failed and code == ExitCode.FAILURE and all(r.bad_input for r in failed):
            code = ExitCode.BAD_INPUT  # e.g. a folder that holds other files: nothing was written
        record.outcome = outcome_for(code)
    console.show_init(app, rows)
    return code


def _init_one(session: Session, config) -> InitRow:
    display = config.name
    try:
        target = session.target(config)
        display = target.display
        repo = session.repository(target)
        if session.restic.exists(repo):
            return InitRow(display, "already initialised; left unchanged")
        target.prepare_init()
        session.restic.init(repo)
        return InitRow(display, "repository created (encrypted, compressed)")
    except OpsctlError as exc:
        return InitRow(display, error=exc.message, hint=exc.hint, bad_input=exc.exit_code == ExitCode.BAD_INPUT)
