"""What the on-call engineer meets during a restore or a drill: the question before it starts, the drill's verdict."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.markup import escape

from opsctl.policy.durations import human_duration
from opsctl.reports.console import Terminal

if TYPE_CHECKING:
    from opsctl.reports.records import DrillReport


def can_ask(app: Terminal) -> bool:
    """A question needs someone at a terminal to answer it."""
    return sys.stdin.isatty() and app.err.is_terminal


def confirm(_app: Terminal, question: str) -> bool:
    return click.confirm(question, default=False, err=True)


def show_drill(app: Terminal, report: DrillReport, paths: Iterable[Path]) -> None:
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
