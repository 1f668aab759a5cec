"""opsctl keys status: each target's keys, which one is opsctl's, its age, and what needs attention."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.markup import escape
from rich.table import Table

from opsctl.actions.context import App, Session
from opsctl.actions.keys import journal as jr
from opsctl.actions.keys.journal import Journal, TargetState
from opsctl.actions.outcome import PerTarget, Problem, TargetResult
from opsctl.actions.runner import Command, Secrets
from opsctl.audit.runs import Fact
from opsctl.errors import OpsctlError
from opsctl.policy.durations import format_duration
from opsctl.restic.models import Key
from opsctl.targets import Target

_DAY_S = 86400


@dataclass(frozen=True)
class KeyInfo:
    id: str
    created: datetime
    user: str
    host: str
    role: str  # opsctl, old (rotation), new (rotation), extra
    age_s: int


@dataclass(frozen=True)
class TargetKeys:
    """One target's keys, and what needs attention about them."""

    keys: tuple[KeyInfo, ...] = ()
    warnings: tuple[str, ...] = ()


KeyRow = TargetResult[TargetKeys]


@dataclass(frozen=True)
class KeysStatus(PerTarget[TargetKeys]):
    rotation_pending: str | None

    def to_json(self) -> dict[str, Any]:
        return {"rotation_pending": self.rotation_pending, "targets": [r.to_json() for r in self.targets]}

    def target_facts(self) -> dict[str, dict[str, Fact]]:
        """When opsctl's key on each target was made, for status's key-age rule."""
        return {r.target: {"key_created": key.created.isoformat(timespec="seconds"), "key_id": key.id}
                for r in self.targets if r.value for key in r.value.keys if key.role == "opsctl"}

    def show(self, app: App) -> None:
        show_status(app, self)


def _status(session: Session, _: None) -> KeysStatus:
    journal = jr.load(session.state_dir)
    password = session.repository_password
    rows = tuple(_row(session, session.target(c), password, journal) for c in session.policy.targets)
    return KeysStatus(rows, journal.rotation if journal else None)


def _row(session: Session, target: Target, password: bytes, journal: Journal | None) -> KeyRow:
    pending = _pending(target.name, journal)
    try:
        keys = session.restic.keys(target.repository(password))
    except OpsctlError as exc:
        return TargetResult(target.name, target.display, TargetKeys(warnings=pending), Problem.of(exc))
    state = next((t for t in journal.targets if t.name == target.name), None) if journal else None
    infos = tuple(_info(k, state) for k in keys)
    return TargetResult(target.name, target.display, TargetKeys(infos, pending + _warnings(session, infos)))


def _info(key: Key, state: TargetState | None) -> KeyInfo:
    if key.current:
        role = "opsctl"
    elif state is not None and key.id in (state.old_key, state.new_key):
        role = "old (rotation)" if key.id == state.old_key else "new (rotation)"
    else:
        role = "extra"
    age = int((datetime.now(UTC) - key.created).total_seconds())
    return KeyInfo(key.id, key.created, key.user, key.host, role, max(0, age))


def _warnings(session: Session, infos: tuple[KeyInfo, ...]) -> tuple[str, ...]:
    limit = session.policy.max_key_age
    found = [f"opsctl's key {k.id} is {format_duration(timedelta(seconds=k.age_s))} old, older than max_key_age "
             f"({format_duration(limit)}): run opsctl keys rotate"
             for k in infos if k.role == "opsctl" and k.age_s > limit.total_seconds()]
    found += [f"unexpected extra key {k.id} ({k.user}@{k.host}, created {k.created:%Y-%m-%d}): "
              f"opsctl never removes it; if nobody needs it, remove it with restic key remove {k.id}"
              for k in infos if k.role == "extra"]
    return tuple(found)


def _pending(name: str, journal: Journal | None) -> tuple[str, ...]:
    """The interrupted rotation's unfinished work on this target."""
    if journal is None:
        return ()
    state = next((t for t in journal.targets if t.name == name), None)
    if state is None or state.removed:
        return ()
    left = "the old key is still there" if journal.switched else "the new key is not switched to yet"
    return (f"key rotation {journal.rotation} is unfinished here ({left}): run opsctl keys rotate --resume",)


def show_status(app: App, status: KeysStatus) -> None:
    rows = status.targets
    table = Table(title="Repository keys", title_justify="left")
    for column in ("Target", "Key", "Created", "Age", "User@host", "Role"):
        table.add_column(column, no_wrap=True)
    for row in rows:
        for k in row.value.keys if row.value else ():  # every row has one, failed ones too
            role = "[bold]opsctl (current)[/]" if k.role == "opsctl" else escape(k.role)
            table.add_row(escape(row.target), k.id, f"{k.created:%Y-%m-%d %H:%M}",
                          format_duration_short(k.age_s), escape(f"{k.user}@{k.host}"), role)
        if row.error:
            table.add_row(escape(row.target), "-", "-", "-", "-", "[red]cannot be read[/]")
    app.out.print(table)
    for row in rows:
        for warning in row.value.warnings if row.value else ():
            app.out.print(f"[yellow]warning:[/] {escape(row.location)}: {escape(warning)}")
        if row.error:
            app.out.print(f"[red]FAILED[/] {escape(row.error)}")
            if row.hint:
                app.out.print(f"  what to do: {escape(row.hint)}")


def format_duration_short(seconds: int) -> str:
    """Days for keys older than a day; a key is rotated in months, not minutes."""
    return f"{seconds // _DAY_S}d" if seconds >= _DAY_S else format_duration(timedelta(seconds=seconds))


KEYS_STATUS = Command("keys status", _status, restic=True, secrets=Secrets.REPOSITORY)
