"""What the operator sees: rich tables on a terminal, plain text in logs, JSON with --json."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timezone
from itertools import pairwise
from typing import Any, Iterable

from rich.markup import escape
from rich.table import Table

_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def human_bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{count} B"


def human_duration(seconds: float) -> str:
    """'0.4s', '42s', '5m12s', '5h12m', '3d4h': at most two units, the smaller left out when it is zero."""
    if seconds < 0:
        return "-" + human_duration(-seconds)
    if round(seconds, 1) < 10:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    for (big, size), (small, step) in pairwise(_UNITS):
        if whole >= size:
            high, low = whole // size, whole % size // step
            return f"{high}{big}{low}{small}" if low else f"{high}{big}"
    return f"{whole}s"


def human_age(moment: datetime) -> str:
    seconds = max(0, int((datetime.now(timezone.utc) - moment).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def show_json(app, payload: Any) -> None:
    def encode(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return dataclasses.asdict(value)
        if isinstance(value, datetime):
            return value.isoformat()
        return str(value)

    app.out.print_json(json.dumps(payload, default=encode, sort_keys=True))


def show_error(app, message: str, hint: str | None, problems: Iterable[str] = ()) -> None:
    """An error on stderr (and as JSON on stdout with --json), calm and with what to do next."""
    problems = list(problems)
    app.err.print(f"[bold red]error:[/] {escape(message)}")
    for problem in problems:
        app.err.print(f"  - {escape(problem)}")
    if hint:
        app.err.print(f"[bold]what to do:[/] {escape(hint)}")
    if app.json_output:
        show_json(app, {"error": message, "hint": hint, "problems": problems})


def show_policy_ok(app, policy, path, notes: list[str]) -> None:
    if app.json_output:
        show_json(app, {"ok": True, "policy": policy.name, "file": str(path), "notes": notes})
        return
    targets = ", ".join(f"{t.name} ({t.kind})" for t in policy.targets)
    app.out.print(f"OK: {path} — policy {policy.name}, {policy.database.engine} "
                  f"database {', '.join(policy.database.names)}, targets: {targets}")
    for note in notes:
        app.err.print(f"note: {escape(note)}")


def show_init(app, rows: list) -> None:
    if app.json_output:
        show_json(app, {"targets": rows})
        return
    for row in rows:
        _verdict(app, row.error is None, row.target, row.error or row.status, row.hint)


def _verdict(app, ok: bool, where: str, text: str, hint: str | None) -> None:
    """One target's line: ok or FAILED, what happened, and on failure what to do."""
    app.out.print(f"{'ok' if ok else '[red]FAILED[/]'}  {escape(where)}: {escape(text)}")
    if hint and not ok:
        app.out.print(f"      what to do: {escape(hint)}")


def show_backup(app, policy_name: str, outcomes: list, lost_databases: list = ()) -> None:
    if app.json_output:
        show_json(app, {"policy": policy_name, "targets": [_outcome_json(o) for o in outcomes],
                        "failed_databases": list(lost_databases)})
        return
    table = Table(title=f"Backup of policy {policy_name}", title_justify="left")
    for column in ("Target", "Role", "Snapshot", "Added", "Time", "Result"):
        table.add_column(column, justify="right" if column in ("Added", "Time") else "left", no_wrap=True)
    for o in outcomes:
        snapshots = ", ".join(f"{m.database}:{m.snapshot_id}" for m in o.snapshots) or "-"
        table.add_row(escape(o.target), o.role, escape(snapshots), human_bytes(o.bytes_added), f"{o.duration_s:.1f}s",
                      "ok" if o.ok else "[red]FAILED[/]")
    app.out.print(table)
    if any(o.role == "replica" for o in outcomes):
        app.out.print("Added: new data before compression on the primary; bytes copied (compressed) to replicas.")
    dumps = {m.database: m for o in outcomes for m in o.snapshots}
    for m in dumps.values():
        holders = [o.target for o in outcomes if any(s.database == m.database for s in o.snapshots)]
        app.out.print(f"{escape(m.database)}: one dump of {human_bytes(m.dump_bytes)} ({m.tables} tables, "
                      f"{m.rows:,} rows), manifest SHA-256 {m.manifest_sha256[:16]}…, now on {escape(', '.join(holders))}")
        for warning in m.warnings:
            app.out.print(f"  [yellow]warning:[/] {escape(warning)}")
    for o in outcomes:
        if not o.ok:
            where = "" if o.location in o.error else f"{o.location}: "
            app.out.print(f"[red]FAILED[/] {escape(where + o.error)}")
            if o.hint:
                app.out.print(f"  what to do: {escape(o.hint)}")
    for f in lost_databases:
        app.out.print(f"[red]FAILED[/] database {escape(f.database)} was not backed up: {escape(f.error)}")
        if f.hint:
            app.out.print(f"  what to do: {escape(f.hint)}")
    failed = sum(not o.ok for o in outcomes)
    if not any(o.snapshots for o in outcomes):
        app.out.print("No target holds a new backup. No partial snapshot was kept.")
    elif failed == 0 and lost_databases:
        app.out.print("Every target holds the databases that were backed up.")
    elif failed == 0:
        app.out.print("The target holds this backup." if len(outcomes) == 1
                      else f"All {len(outcomes)} targets hold this backup.")
    else:
        app.out.print(f"{failed} of {len(outcomes)} targets failed; the others hold this backup. No partial snapshot was kept.")


def _outcome_json(o) -> dict:
    return {"target": o.target, "location": o.location, "role": o.role, "ok": o.ok,
            "snapshots": [{"database": m.database, "snapshot_id": m.snapshot_id, "manifest_sha256": m.manifest_sha256,
                           "dump_bytes": m.dump_bytes, "tables": m.tables, "rows": m.rows,
                           "warnings": list(m.warnings)} for m in o.snapshots],
            "bytes_added": o.bytes_added, "duration_s": round(o.duration_s, 3), "error": o.error, "hint": o.hint}


def show_snapshots(app, rows: list) -> None:
    if app.json_output:
        show_json(app, {"snapshots": rows})
        return
    table = Table(title="Snapshots", title_justify="left")
    for column in ("Target", "ID", "Time (UTC)", "Age", "Database", "Host", "opsctl"):
        table.add_column(column)
    for row in rows:
        table.add_row(escape(row.target), row.short_id, row.time.strftime("%Y-%m-%d %H:%M:%S"),
                      human_age(row.time), escape(row.database or "?"), escape(row.hostname),
                      escape(row.opsctl_version or "?"))
    app.out.print(table)
    if not rows:
        app.out.print("No snapshots yet. Run: opsctl backup")


def show_prune(app, rows: list) -> None:
    if app.json_output:
        show_json(app, {"targets": [{"target": r.target, "location": r.location, "rules": r.rules,
                                     "dry_run": r.dry_run, "kept": [s.id for s in r.kept],
                                     "removed": [s.id for s in r.removed], "error": r.error} for r in rows]})
        return
    for r in rows:
        rules = ", ".join(f"{k.replace('_', '-')} {v}" for k, v in sorted(r.rules.items()))
        if r.error:
            _verdict(app, False, r.location, r.error, r.hint)
            continue
        verb = "would remove" if r.dry_run else "removed"
        app.out.print(f"ok  {escape(r.location)} ({rules}): keeps {len(r.kept)}, {verb} {len(r.removed)}")
        for s in r.removed:
            app.out.print(f"      {verb} {s.short_id} {s.time:%Y-%m-%d %H:%M:%S} {escape(s.tag('db') or '?')}")
    if any(r.dry_run for r in rows):
        app.out.print("Dry run: nothing was removed.")


def show_check(app, rows: list) -> None:
    if app.json_output:
        show_json(app, {"targets": rows})
        return
    for r in rows:
        _verdict(app, r.ok, r.location, r.summary, r.hint)


def show_doctor(app, sections: list) -> None:
    if app.json_output:
        show_json(app, {"ok": all(f.ok for _, facts in sections for f in facts),
                        "sections": [{"name": name, "checks": facts} for name, facts in sections]})
        return
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


def show_verify(app, report: dict, paths) -> None:
    """The verdict first, then each target's problems, then where the reports are."""
    if app.json_output:
        show_json(app, {**report, "files": [str(p) for p in paths]})
        return
    colour = "green" if report["verdict"] == "PASSED" else "red"
    app.out.print(f"[bold {colour}]Verification {report['verdict']}[/]: {escape(report['summary'])}")
    for target in report["targets"]:
        rows = sum(t["rows_actual"] or 0 for t in target["tables"])
        app.out.print(f"  {escape(target['target'])}: {target['verdict']} — snapshot {target['snapshot_id'] or '-'}, "
                      f"{len(target['tables'])} tables, {rows:,} rows, repository {escape(target['repository'])}, "
                      f"{target['duration_s']:.1f}s")
        for problem in ([target["error"]] if target["error"] else []) + target["problems"][:20]:
            app.out.print(f"    - {escape(problem)}")
        for note in target.get("notes", [])[:20]:
            app.out.print(f"    note: {escape(note)}")
        if target["hint"]:
            app.out.print(f"    what to do: {escape(target['hint'])}")
    if report["targets_identical"] is not None:
        app.out.print("  targets hold byte-identical backups (same manifest SHA-256)" if report["targets_identical"]
                      else "  [red]targets hold DIFFERENT backups (manifest SHA-256 differ)[/]")
    for path in paths:
        app.out.print(f"  report: {escape(str(path))}")


def show_report_check(app, check) -> None:
    if app.json_output:
        show_json(app, {"file": str(check.path), "intact": check.intact, "audit_trail": check.audit,
                        "message": check.message})
        return
    app.out.print(escape(check.message))


def show_report_list(app, rows: list[dict]) -> None:
    if app.json_output:
        show_json(app, rows)
        return
    if not rows:
        app.out.print("No verifications yet. Run: opsctl verify")
        return
    table = Table("date", "database", "target", "snapshot", "verdict", "report")
    for row in rows:
        table.add_row(escape(row["date"]), escape(row["database"]), escape(", ".join(map(str, row["targets"]))),
                      escape(", ".join(row["snapshots"])), row["verdict"], escape(row["file"]))
    app.out.print(table)
