"""opsctl policy validate: every problem in one pass, or a one-line OK."""

from __future__ import annotations

from opsctl.actions.context import App, Session
from opsctl.errors import ExitCode, NotSupportedYet
from opsctl.reports import console
from opsctl.sources import sources_for


def validate(app: App) -> ExitCode:
    session = Session(app)
    notes = []
    try:
        sources_for(session.policy.database, None, session.state_dir)
    except NotSupportedYet as exc:
        notes.append(exc.message)
    for config in session.policy.targets:
        try:
            session.target(config)
        except NotSupportedYet as exc:
            notes.append(exc.message)
    console.show_policy_ok(app, session.policy, session.policy_path, notes)
    return ExitCode.OK
