"""What the operator sees: rich tables on a terminal, plain text in logs, JSON with --json."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timezone
from typing import Any, Iterable

from rich.markup import escape
from rich.table import Table


def human_bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{count} B"


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
        mark = "[red]FAILED[/]" if row.error else "ok"
        app.out.print(f"{mark}  {escape(row.target)}: {escape(row.error or row.status)}")
        if row.hint:
            app.out.print(f"      what to do: {escape(row.hint)}")


def show_backup(app, policy_name: str, results: list) -> None:
    if app.json_output:
        show_json(app, {"policy": policy_name, "results": results})
        return
    table = Table(title=f"Backup of policy {policy_name}", title_justify="left")
    for column in ("Database", "Target", "Snapshot", "Dump", "Added", "Rows", "Time", "Result"):
        table.add_column(column, justify="right" if column in ("Dump", "Added", "Rows", "Time") else "left",
                         no_wrap=True)
    for r in results:
        table.add_row(escape(r.database), escape(r.target), r.snapshot_id or "-", human_bytes(r.dump_bytes),
                      human_bytes(r.bytes_added), f"{r.rows:,}", f"{r.duration_s:.1f}s",
                      "ok" if r.ok else "[red]FAILED[/]")
    app.out.print(table)
    for r in results:
        if r.ok:
            app.out.print(f"{escape(r.database)} → {escape(r.location)}: {r.tables} tables, snapshot {r.snapshot_id}")
            for warning in r.warnings:
                app.out.print(f"  [yellow]warning:[/] {escape(warning)}")
        else:
            app.out.print(f"[red]{escape(r.database)} → {escape(r.location)} failed:[/] {escape(r.error)}")
            if r.hint:
                app.out.print(f"  what to do: {escape(r.hint)}")
    failed = sum(not r.ok for r in results)
    total = f"{len(results)} backup" + ("s" if len(results) != 1 else "")
    if failed == 0:
        app.out.print(f"{total} completed; each snapshot carries its manifest (size, SHA-256, row counts).")
    else:
        app.out.print(f"{failed} of {total} failed; no partial snapshot was kept.")


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


def show_restore(app, result) -> None:
    if app.json_output:
        show_json(app, result)
        return
    out = app.out
    out.print(f"Restored database {escape(result.database)} from snapshot {result.snapshot_id} "
              f"({result.snapshot_time:%Y-%m-%d %H:%M:%S} UTC) on {escape(result.target)}")
    out.print(f"  into {escape(result.destination)}, {human_bytes(result.dump_bytes)} in {result.duration_s:.1f}s")
    out.print(f"  dump SHA-256 matches the manifest: {result.dump_sha256[:16]}…")
    out.print(f"  row counts match the backup: {result.tables} tables, {result.rows:,} rows")
    if result.moved_aside:
        out.print(f"  the previous database was kept, renamed to {escape(result.moved_aside)}")
