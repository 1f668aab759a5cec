"""opsctl policy validate: every problem in one pass, or a one-line OK."""

from __future__ import annotations

from dataclasses import dataclass

from rich.markup import escape

from opsctl.actions.context import App, Session
from opsctl.actions.outcome import Outcome
from opsctl.actions.runner import Command
from opsctl.errors import NotSupportedYet
from opsctl.sources import sources_for


@dataclass(frozen=True)
class PolicyChecked(Outcome):
    """A policy without problems; notes name what it asks for that this version cannot run yet."""

    policy: str
    file: str
    engine: str
    databases: tuple[str, ...]
    targets: tuple[tuple[str, str], ...]
    notes: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        return {"ok": True, "policy": self.policy, "file": self.file, "notes": list(self.notes)}

    def show(self, app: App) -> None:
        show_policy_ok(app, self)


def _validate(session: Session, _: None) -> PolicyChecked:
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
    policy = session.policy
    return PolicyChecked(policy.name, str(session.policy_path), policy.database.engine, tuple(policy.database.names),
                         tuple((t.name, t.kind) for t in policy.targets), tuple(notes))


def show_policy_ok(app: App, checked: PolicyChecked) -> None:
    targets = ", ".join(f"{name} ({kind})" for name, kind in checked.targets)
    app.out.print(f"OK: {checked.file} — policy {checked.policy}, {checked.engine} "
                  f"database {', '.join(checked.databases)}, targets: {targets}")
    for note in checked.notes:
        app.err.print(f"note: {escape(note)}")


VALIDATE = Command("policy validate", _validate)
