"""What every view is made of (durations, sizes, a target's verdict line, errors, JSON), and the report views.

A command's own text lives with its outcome in `actions/`; views here get a Terminal, never the CLI's App.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from opsctl.reports.records import VerificationReport
    from opsctl.reports.sealed import ReportCheck
    from opsctl.reports.verification import PastVerification
    from opsctl.targets import Fact


class Terminal(Protocol):
    """Where views write: stdout and stderr consoles, and whether the output is JSON (the CLI's App is one)."""

    @property
    def out(self) -> Console: ...
    @property
    def err(self) -> Console: ...
    @property
    def json_output(self) -> bool: ...


_KIB = 1024


def human_bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < _KIB or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= _KIB
    return f"{count} B"


def human_age(moment: datetime) -> str:
    seconds = max(0, int((datetime.now(UTC) - moment).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def show_json(app: Terminal, payload: dict[str, Any]) -> None:
    """One JSON document on stdout; outcomes hand over JSON types already (their to_json)."""
    app.out.print_json(json.dumps(payload, sort_keys=True))


# Characters a terminal acts on or draws deceptively: controls (ESC starts colours and cursor moves), format
# characters (right-to-left overrides), line separators, and lone surrogates (an undecodable file name).
_UNPRINTABLE = ("Cc", "Cf", "Cs", "Zl", "Zp")


def printable(text: str, *, keep: str = "") -> str:
    """`text` with every character a terminal would act on shown as an escape (\\x1b, \\n, \\u202e), except
    those in `keep`: a file name or a report's field can never move the cursor or fake a line of output."""
    return "".join(c if c in keep or unicodedata.category(c) not in _UNPRINTABLE else ascii(c)[1:-1] for c in text)


# Some errors quote a tool's output over several lines; only the characters that act on a terminal are escaped.
_LINES = "\n\t"


def show_error(app: Terminal, message: str, hint: str | None, problems: Iterable[str] = ()) -> None:
    """An error on stderr (and as JSON on stdout with --json), calm and with what to do next."""
    problems = list(problems)
    app.err.print(f"[bold red]error:[/] {escape(printable(message, keep=_LINES))}")
    for problem in problems:
        app.err.print(f"  - {escape(printable(problem, keep=_LINES))}")
    if hint:
        app.err.print(f"[bold]what to do:[/] {escape(printable(hint, keep=_LINES))}")


def verdict_line(app: Terminal, ok: bool, where: str, text: str | None, hint: str | None) -> None:
    """One target's line: ok or FAILED, what happened, and on failure what to do."""
    app.out.print(f"{'ok' if ok else '[red]FAILED[/]'}  {escape(where)}: {escape(text or '')}")
    if hint and not ok:
        app.out.print(f"      what to do: {escape(hint)}")


def show_doctor(app: Terminal, sections: list[tuple[str, list[Fact]]]) -> None:
    for name, facts in sections:
        if not facts:
            continue
        app.out.print(f"[bold]{escape(name)}[/]")
        for f in facts:
            mark = "  ok     " if f.ok else "  [red]PROBLEM[/]"
            app.out.print(f"{mark} {escape(f.check)}: {escape(f.detail)}")
            if f.hint:
                app.out.print(f"          what to do: {escape(f.hint)}")
    problems = sum(not f.ok for _, facts in sections for f in facts)
    app.out.print("Everything opsctl needs is in place." if problems == 0
                  else f"{problems} problem(s) found; fix them, then run: opsctl doctor")


def show_verify(app: Terminal, report: VerificationReport, paths: Iterable[Path]) -> None:
    """The verdict first, then each target's problems, then where the reports are."""
    colour = "green" if report.verdict == "PASSED" else "red"
    app.out.print(f"[bold {colour}]Verification {report.verdict}[/]: {escape(report.summary)}")
    for target in report.targets:
        rows = sum(t.rows_actual or 0 for t in target.tables)
        app.out.print(f"  {escape(target.target)}: {target.verdict} — snapshot {target.snapshot_id or '-'}, "
                      f"{len(target.tables)} tables, {rows:,} rows, repository {escape(target.repository)}, "
                      f"{target.duration_s:.1f}s")
        for problem in ([target.error] if target.error else []) + list(target.problems[:20]):
            app.out.print(f"    - {escape(problem)}")
        for note in target.notes[:20]:
            app.out.print(f"    note: {escape(note)}")
        if target.hint:
            app.out.print(f"    what to do: {escape(target.hint)}")
    if report.targets_identical is not None:
        app.out.print("  targets hold byte-identical backups (same manifest SHA-256)" if report.targets_identical
                      else "  [red]targets hold DIFFERENT backups (manifest SHA-256 differ)[/]")
    for path in paths:
        app.out.print(f"  report: {escape(str(path))}")


# The words a report check's sentence starts with; the longer of two that share a start comes first.
_CHECK_WORDS = ("ALTERED or foreign", "ALTERED", "WRONG KEY", "UNSIGNED", "NOT RECORDED", "TRAIL BROKEN", "VALID",
                "intact")


def check_word(message: str) -> str | None:
    """The verdict a report check's sentence starts with (VALID, ALTERED, NOT RECORDED, ...), if any."""
    return next((w for w in _CHECK_WORDS if message.startswith(f"{w}:")), None)


def show_report_check(app: Terminal, check: ReportCheck) -> None:
    """The verdict in one calm sentence (two with an audit trail); its first word stands out on a terminal."""
    message = printable(check.message)  # it quotes file names and report fields: never raw to a terminal
    word = check_word(message)
    if word is None:
        app.out.print(escape(message))
        return
    colour = "green" if check.intact else "red"
    app.out.print(f"[bold {colour}]{escape(word)}[/]{escape(message[len(word):])}")


def show_report_list(app: Terminal, rows: Sequence[PastVerification]) -> None:
    if not rows:
        app.out.print("No verifications yet. Run: opsctl verify")
        return
    table = Table("date", "database", "target", "snapshot", "verdict", "report")
    for row in rows:
        cells = (row.date, row.database, ", ".join(row.targets), ", ".join(row.snapshots), row.verdict, row.file)
        table.add_row(*(escape(printable(cell)) for cell in cells))  # read from files anyone with access could edit
    app.out.print(table)
