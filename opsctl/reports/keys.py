"""What `opsctl keys rotate` and `opsctl keys status` print (their JSON comes from the outcome itself)."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from rich.markup import escape
from rich.table import Table

from opsctl.policy.durations import format_duration

if TYPE_CHECKING:  # types only: at run time reports never import actions (actions -> reports)
    from opsctl.actions.context import App
    from opsctl.actions.keys.journal import Journal
    from opsctl.actions.keys.rotate import RotationResult
    from opsctl.actions.keys.status import KeysStatus

_DAY_S = 86400


def show_plan(app: App, journal: Journal) -> None:
    """--dry-run: what the rotation would do (or, for an interrupted one, what is left)."""
    resumed = journal.step != "plan"
    app.out.print(f"Interrupted rotation {journal.rotation} stopped at step {journal.step}; a resume would finish:"
                  if resumed else "Every target is reachable and opens with the current password. A rotation would:")
    for t in journal.targets:
        how = f"receive {t.origin}'s new key file (a replica)" if t.origin else "get a new key (restic key add)"
        app.out.print(f"  {escape(t.display)}: {how}, then lose old key {t.old_key}")
    app.out.print("Dry run: nothing was changed.")


def show_rotation(app: App, result: RotationResult) -> None:
    j = result.journal
    table = Table(title=f"Key rotation {j.rotation}", title_justify="left")
    for column in ("Target", "Role", "Old key", "New key", "Result"):
        table.add_column(column, no_wrap=True)
    for t in j.targets:
        done = "[red]" + escape(t.error) + "[/]" if t.error else ("rotated" if t.removed else
                                                                  "new key added" if t.added else "not yet")
        table.add_row(escape(t.display), f"replica of {escape(t.origin)}" if t.origin else "repository",
                      t.old_key, t.new_key or "-", done)
    app.out.print(table)
    app.out.print(escape(result.message))
    if result.hint:
        app.out.print(f"what to do: {escape(result.hint)}")


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
