"""opsctl policy validate: every problem in one pass, or a one-line OK."""

from __future__ import annotations

from dataclasses import dataclass

from rich.markup import escape

from opsctl.actions.context import App, Session
from opsctl.actions.outcome import Outcome
from opsctl.actions.runner import Command
from opsctl.errors import NotSupportedYet, PolicyInvalid
from opsctl.policy.calendar import systemd_disagrees
from opsctl.policy.notify import Notify, channel_problem
from opsctl.policy.schedule import JOBS, Schedule
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
    schedule: tuple[tuple[str, str | None, str | None], ...] = ()  # job, as written, as systemd reads it (off: None)
    channels: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {"ok": True, "policy": self.policy, "file": self.file, "notes": list(self.notes),
                "schedule": {job: normalized for job, _, normalized in self.schedule}, "notify": list(self.channels)}

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
    problems = _schedule_problems(policy.schedule) + _channel_problems(policy.notify) + policy.lock_problems()
    if problems:
        raise PolicyInvalid(str(session.policy_path), problems)
    notes += [note for note in (policy.rpo_note(), policy.compliance_note()) if note]
    notes += [f"notify.channels[{i}] sends over plain http: anyone on the way can read what it sends, and its URL's "
              "token; use https"
              for i, c in enumerate(policy.notify.channels) if (getattr(c, "url", None) or "").startswith("http:")]
    return PolicyChecked(policy.name, str(session.policy_path), policy.database.engine, tuple(policy.database.names),
                         tuple((t.name, t.kind) for t in policy.targets), tuple(notes),
                         _schedule(policy.schedule),
                         tuple(f"{c.kind} ({', '.join(c.events)})" for c in policy.notify.channels))


def _schedule_problems(schedule: Schedule) -> list[str]:
    """Where systemd is installed, it must read every expression as opsctl does."""
    return [f"schedule.{job}: {why}" for job, when in schedule.jobs().items()
            if (why := systemd_disagrees(when)) is not None]


def _channel_problems(notify: Notify) -> list[str]:
    """A channel that could not be used now (at run time it would be a failed notification, not a failed job)."""
    return [f"notify.channels[{i}]: {why}" for i, channel in enumerate(notify.channels)
            if (why := channel_problem(channel)) is not None]


def _schedule(schedule: Schedule) -> tuple[tuple[str, str | None, str | None], ...]:
    """Each job, as written and as systemd reads it (None, None: off)."""
    whens = [(job, getattr(schedule, job)) for job in JOBS]
    return tuple((job, when.text, when.normalized) if when else (job, None, None) for job, when in whens)


def show_policy_ok(app: App, checked: PolicyChecked) -> None:
    targets = ", ".join(f"{name} ({kind})" for name, kind in checked.targets)
    app.out.print(f"OK: {checked.file} — policy {checked.policy}, {checked.engine} "
                  f"database {', '.join(checked.databases)}, targets: {targets}")
    if checked.schedule:
        app.out.print("schedule: " + ", ".join(f"{job} {escape(text or 'off')}" for job, text, _ in checked.schedule))
    if checked.channels:
        app.out.print("notify: " + ", ".join(checked.channels))
    for note in checked.notes:
        app.err.print(f"note: {escape(note)}")


VALIDATE = Command("policy validate", _validate)
