"""What the operator sees: rich tables on a terminal, plain text in logs, JSON with --json."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:  # types only: at run time reports never import actions (actions -> reports)
    from opsctl.actions.backup import BackedUp
    from opsctl.actions.check import Checked
    from opsctl.actions.context import App
    from opsctl.actions.init import Initialised
    from opsctl.actions.prune import PruneOutcome
    from opsctl.actions.snapshots import SnapshotsListed
    from opsctl.actions.validate import PolicyChecked
    from opsctl.reports.records import VerificationReport
    from opsctl.reports.sealed import ReportCheck
    from opsctl.reports.verification import PastVerification
    from opsctl.targets import Fact

_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
_KIB = 1024
_TENTHS_BELOW_S = 10  # durations shorter than this are shown with tenths of a second


def human_bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < _KIB or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= _KIB
    return f"{count} B"


def human_duration(seconds: float) -> str:
    """'0.4s', '42s', '5m12s', '5h12m', '3d4h': at most two units, the smaller left out when it is zero."""
    if seconds < 0:
        return "-" + human_duration(-seconds)
    if round(seconds, 1) < _TENTHS_BELOW_S:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    for (big, size), (small, step) in pairwise(_UNITS):
        if whole >= size:
            high, low = whole // size, whole % size // step
            return f"{high}{big}{low}{small}" if low else f"{high}{big}"
    return f"{whole}s"


def human_age(moment: datetime) -> str:
    seconds = max(0, int((datetime.now(UTC) - moment).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def show_json(app: App, payload: Any) -> None:
    def encode(value: Any) -> Any:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return dataclasses.asdict(value)
        if isinstance(value, datetime):
            return value.isoformat()
        return str(value)

    app.out.print_json(json.dumps(payload, default=encode, sort_keys=True))


def show_error(app: App, message: str, hint: str | None, problems: Iterable[str] = ()) -> None:
    """An error on stderr (and as JSON on stdout with --json), calm and with what to do next."""
    problems = list(problems)
    app.err.print(f"[bold red]error:[/] {escape(message)}")
    for problem in problems:
        app.err.print(f"  - {escape(problem)}")
    if hint:
        app.err.print(f"[bold]what to do:[/] {escape(hint)}")


def show_policy_ok(app: App, checked: PolicyChecked) -> None:
    targets = ", ".join(f"{name} ({kind})" for name, kind in checked.targets)
    app.out.print(f"OK: {checked.file} — policy {checked.policy}, {checked.engine} "
                  f"database {', '.join(checked.databases)}, targets: {targets}")
    for note in checked.notes:
        app.err.print(f"note: {escape(note)}")


def show_init(app: App, outcome: Initialised) -> None:
    for row in outcome.targets:
        _verdict(app, row.ok, row.location, row.error or row.value, row.hint)


def _verdict(app: App, ok: bool, where: str, text: str | None, hint: str | None) -> None:
    """One target's line: ok or FAILED, what happened, and on failure what to do."""
    app.out.print(f"{'ok' if ok else '[red]FAILED[/]'}  {escape(where)}: {escape(text or '')}")
    if hint and not ok:
        app.out.print(f"      what to do: {escape(hint)}")


def show_backup(app: App, backed_up: BackedUp) -> None:
    policy_name, outcomes = backed_up.policy, backed_up.targets
    table = Table(title=f"Backup of policy {policy_name}", title_justify="left")
    for column in ("Target", "Role", "Snapshot", "Added", "Time", "Result"):
        table.add_column(column, justify="right" if column in ("Added", "Time") else "left", no_wrap=True)
    delivered = [(o, o.value) for o in outcomes if o.value is not None]  # every row has one, failed ones too
    for o, d in delivered:
        snapshots = ", ".join(f"{m.database}:{m.snapshot_id}" for m in d.snapshots) or "-"
        table.add_row(escape(o.target), d.role.label, escape(snapshots), human_bytes(d.bytes_added),
                      f"{o.duration_s:.1f}s", "ok" if o.ok else "[red]FAILED[/]")
    app.out.print(table)
    if any(d.role.label == "replica" for _, d in delivered):
        app.out.print("Added: new data before compression on the primary; bytes copied (compressed) to replicas.")
    dumps = {m.database: m for _, d in delivered for m in d.snapshots}
    for m in dumps.values():
        holders = [o.target for o, d in delivered if any(s.database == m.database for s in d.snapshots)]
        app.out.print(f"{escape(m.database)}: one dump of {human_bytes(m.dump_bytes)} ({m.tables} tables, "
                      f"{m.rows:,} rows), manifest SHA-256 {m.manifest_sha256[:16]}…, "
                      f"now on {escape(', '.join(holders))}")
        for warning in m.warnings:
            app.out.print(f"  [yellow]warning:[/] {escape(warning)}")
    _show_backup_failures(app, backed_up)
    _show_backup_ending(app, backed_up, any(d.snapshots for _, d in delivered))


def _show_backup_failures(app: App, backed_up: BackedUp) -> None:
    for o in backed_up.targets:
        if not o.ok:
            error = o.error or ""
            where = "" if o.location in error else f"{o.location}: "
            app.out.print(f"[red]FAILED[/] {escape(where + error)}")
            if o.hint:
                app.out.print(f"  what to do: {escape(o.hint)}")
    for f in backed_up.lost_databases:
        app.out.print(f"[red]FAILED[/] database {escape(f.database)} was not backed up: {escape(f.error)}")
        if f.hint:
            app.out.print(f"  what to do: {escape(f.hint)}")


def _show_backup_ending(app: App, backed_up: BackedUp, anything_new: bool) -> None:
    outcomes, lost_databases = backed_up.targets, backed_up.lost_databases
    failed = sum(not o.ok for o in outcomes)
    if not anything_new:
        app.out.print("No target holds a new backup. No partial snapshot was kept.")
    elif failed == 0 and lost_databases:
        app.out.print("Every target holds the databases that were backed up.")
    elif failed == 0:
        app.out.print("The target holds this backup." if len(outcomes) == 1
                      else f"All {len(outcomes)} targets hold this backup.")
    else:
        app.out.print(f"{failed} of {len(outcomes)} targets failed; the others hold this backup. "
                      "No partial snapshot was kept.")


def show_snapshots(app: App, listed: SnapshotsListed) -> None:
    rows = listed.rows
    table = Table(title="Snapshots", title_justify="left")
    for column in ("Target", "ID", "Time (UTC)", "Age", "Database", "Host", "opsctl"):
        table.add_column(column)
    for row in rows:
        table.add_row(escape(row.target), row.short_id, row.time.strftime("%Y-%m-%d %H:%M:%S"),
                      human_age(row.time), escape(row.database or "?"), escape(row.hostname),
                      escape(row.opsctl_version or "?"))
    app.out.print(table)
    failed = [r for r in listed.targets if not r.ok]
    if not rows and not failed:
        app.out.print("No snapshots yet. Run: opsctl backup")
    for r in failed:
        _verdict(app, False, r.location, r.error, r.hint)


def show_prune(app: App, pruned: PruneOutcome) -> None:
    verb = "would remove" if pruned.dry_run else "removed"
    for r in pruned.targets:
        if not r.ok:
            _verdict(app, False, r.location, r.error, r.hint)
            continue
        if r.value is None:  # an ok row always has its value
            continue
        rules = ", ".join(f"{k.replace('_', '-')} {v}" for k, v in sorted(r.value.rules.items()))
        app.out.print(f"ok  {escape(r.location)} ({rules}): keeps {len(r.value.kept)}, {verb} {len(r.value.removed)}")
        for s in r.value.removed:
            app.out.print(f"      {verb} {s.short_id} {s.time:%Y-%m-%d %H:%M:%S} {escape(s.tag('db') or '?')}")
    if pruned.dry_run:
        app.out.print("Dry run: nothing was removed.")


def show_check(app: App, checked: Checked) -> None:
    for r in checked.targets:
        _verdict(app, r.ok, r.location, r.value.summary if r.value else r.error, r.hint)


def show_doctor(app: App, sections: list[tuple[str, list[Fact]]]) -> None:
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


def show_verify(app: App, report: VerificationReport, paths: Iterable[Path]) -> None:
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


def show_report_check(app: App, check: ReportCheck) -> None:
    app.out.print(escape(check.message))


def show_report_list(app: App, rows: Sequence[PastVerification]) -> None:
    if not rows:
        app.out.print("No verifications yet. Run: opsctl verify")
        return
    table = Table("date", "database", "target", "snapshot", "verdict", "report")
    for row in rows:
        table.add_row(escape(row.date), escape(row.database), escape(", ".join(row.targets)),
                      escape(", ".join(row.snapshots)), escape(row.verdict), escape(row.file))
    app.out.print(table)
