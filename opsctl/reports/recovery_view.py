"""What the on-call engineer reads during a restore or a drill: the plan, the question, the runbook, the verdict."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.markup import escape
from rich.table import Table

from opsctl.reports.console import human_bytes, human_duration

if TYPE_CHECKING:  # types only: at run time reports never import actions (actions -> reports)
    from opsctl.actions.context import App
    from opsctl.actions.history import PastDrill
    from opsctl.actions.restore import RestorePlan, RestoreResult
    from opsctl.reports.records import DrillReport


def show_restore_plan(app: App, plan: RestorePlan) -> None:
    """Everything the restore will do, before it does anything (on stderr: stdout stays the result)."""
    out = app.err
    size = human_bytes(plan.size_bytes) if plan.size_bytes is not None else "size unknown"
    out.print("[bold]Restore plan[/]")
    out.print(f"  snapshot   {plan.snapshot_id} of {escape(plan.database)}, taken "
              f"{plan.snapshot_time:%Y-%m-%d %H:%M:%S %Z} ({human_duration(plan.age_s)} ago), {size}")
    out.print(f"  from       {escape(plan.location)} — {escape(plan.reason)}")
    for other in plan.others:
        out.print(f"             not used: {escape(other)}")
    new = "a new file" if plan.engine == "sqlite" else "a new database"
    action = "REPLACES it (the current one is kept, renamed aside)" if plan.replaces else new
    out.print(f"  into       {escape(plan.destination)} — {action}")
    check = "verify it equals the backup, table by table" if plan.verify else "no verification (--no-verify)"
    out.print(f"  then       {check}; only then is it put in place")
    if plan.estimate_s is None:
        out.print(f"  time       unknown: {escape(plan.estimate_basis)}")
    else:
        out.print(f"  time       about {human_duration(plan.estimate_s)} ({escape(plan.estimate_basis)})")


def can_ask(app: App) -> bool:
    """A question needs someone at a terminal to answer it."""
    return sys.stdin.isatty() and app.err.is_terminal


def confirm(_app: App, question: str) -> bool:
    return click.confirm(question, default=False, err=True)


def show_restore(app: App, result: RestoreResult) -> None:
    """The runbook: what was restored, whether it verified, and the exact next steps."""
    plan, out = result.plan, app.out
    out.print(f"[bold green]Restored[/] {escape(plan.database)} from snapshot {plan.snapshot_id} "
              f"({plan.snapshot_time:%Y-%m-%d %H:%M:%S %Z}) on {escape(plan.target)} "
              f"in {human_duration(result.duration_s)}")
    out.print(f"  into        {escape(result.destination)}")
    counts = (f"row counts match the backup: {result.tables} tables, {result.rows:,} rows" if result.rows_checked
              else "row counts not checked")
    out.print(f"  checked     dump SHA-256 matches the manifest ({result.dump_sha256[:16]}…); {counts}")
    out.print(f"  verified    {escape(result.verification)}")
    if result.moved_aside:
        out.print(f"  the previous database was kept, renamed to {escape(result.moved_aside)} (opsctl never drops it)")
    out.print("[bold]Next steps[/]")
    for number, step in enumerate(result.next_steps, 1):
        out.print(f"  {number}. {escape(step)}")


def show_drill(app: App, report: DrillReport, paths: Iterable[Path]) -> None:
    """Verdict first, then objectives against what was measured, the phases, what to do, and the report files."""
    out = app.out
    colour = "green" if report.verdict == "PASSED" else "red"
    out.print(f"[bold {colour}]Drill {report.verdict}[/]: {escape(report.summary)}")
    lines = (("RTO", report.measured.rto_s, report.objectives.rto_s, report.met.rto),
             ("RPO", report.measured.rpo_s, report.objectives.rpo_s, report.met.rpo))
    for label, measured, objective, met in lines:
        shown = "not measured" if measured is None else human_duration(measured)
        goal = "-" if objective is None else human_duration(objective)
        verdict = {True: "met", False: "[red]MISSED[/]", None: "-"}[met]
        out.print(f"  {label}  {shown:>12}  objective {goal:>8}  {verdict}")
    out.print("  phases  " + ", ".join(f"{p.name} {human_duration(p.seconds)} ({p.share:.0%})"
                                       for p in report.phases))
    for row in report.databases:
        out.print(f"  {escape(row.database)}: {row.verdict} — snapshot {row.snapshot_id or '-'} "
                  f"from {escape(report.target)}, {row.tables} tables, {row.rows:,} rows")
        for note in row.notes[:20]:
            out.print(f"    note: {escape(note)}")
    for advice in report.advice:
        out.print(f"  what to do: {escape(advice)}")
    for path in paths:
        out.print(f"  report: {escape(str(path))}")


def show_drill_history(app: App, rows: list[PastDrill]) -> None:
    if not rows:
        app.out.print("No drills recorded yet. Run: opsctl drill")
        return
    table = Table("date", "target", "snapshot", "RTO", "RPO", "verdict", "report")
    for row in rows:
        table.add_row(escape(row.time), escape(str(row.target)), escape(", ".join(row.snapshots) or "-"),
                      _against(row.rto_s, row.rto_objective_s), _against(row.rpo_s, row.rpo_objective_s),
                      escape(row.verdict), escape(row.report or "-"))
    app.out.print(table)


def _against(measured: float | None, objective: float | None) -> str:
    if measured is None:
        return "-"
    text = human_duration(measured)
    return text if objective is None else f"{text} / {human_duration(objective)}"
