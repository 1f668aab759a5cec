"""`opsctl status` on a terminal: the verdict, each rule with its reason and what to do, then the targets."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table

from opsctl.policy.durations import human_duration
from opsctl.reports.console import Terminal

_STYLE = {"PASS": "green", "FAIL": "red", "UNKNOWN": "yellow"}


def show_status(app: Terminal, document: dict[str, Any], files: list[str]) -> None:
    verdict = document["verdict"]
    mode = " (from the run record: --offline)" if document["mode"] == "offline" else ""
    app.out.print(f"[bold {_STYLE[verdict]}]{verdict}[/]  policy {escape(document['policy'])}{mode}: "
                  f"{escape(document['summary'])}")
    _rules(app, document["rules"])
    _targets(app, document["targets"])
    _drill(app, document.get("drill"))
    for path in files:
        app.out.print(f"written: {escape(path)}")


def _rules(app: Terminal, rules: list[dict[str, Any]]) -> None:
    for rule in rules:
        status = rule["status"]
        required = "" if rule["required"] else " [dim](not required)[/]"
        app.out.print(f"  [{_STYLE[status]}]{status:<7}[/] {escape(rule['rule'])}{required}: {escape(rule['reason'])}")
        if rule["todo"] and status != "PASS":
            app.out.print(f"           what to do: {escape(rule['todo'])}")


def _targets(app: Terminal, targets: list[dict[str, Any]]) -> None:
    table = Table(title="Targets", title_justify="left")
    for column in ("Target", "Media", "Answers", "Snapshots", "Newest", "Newest verified", "Last check",
                   "Immutable", "Key age"):
        table.add_column(column)
    for t in targets:
        where = ("off-site" if t["offsite"] else "on-site") + (", offline" if t["offline"] else "")
        table.add_row(f"{escape(t['target'])} ({where})", escape(t["media"]), _answers(t["reachable"]),
                      _text(t["snapshots"]), _age(t["newest_snapshot_age_s"]), _age(t["newest_verified_age_s"]),
                      _check(t["last_check"]), _lock(t), _age(t["key_age_s"]))
    app.out.print(table)
    for t in targets:
        if t["error"]:
            app.out.print(f"[red]{escape(t['target'])}[/]: {escape(t['error'])}")
            if t["hint"]:
                app.out.print(f"  what to do: {escape(t['hint'])}")


def _drill(app: Terminal, drill: dict[str, Any] | None) -> None:
    if drill is None:
        app.out.print("Last drill: none recorded on this machine")
        return
    word = "passed" if drill["ok"] else "[red]FAILED[/]"
    rto = human_duration(drill["rto_s"]) if drill["rto_s"] is not None else "-"
    rpo = human_duration(drill["rpo_s"]) if drill["rpo_s"] is not None else "-"
    app.out.print(f"Last drill: {word} {_age(drill['age_s'])} ago from {escape(drill['target'] or '?')}: "
                  f"RTO {rto}, RPO {rpo}")


def _answers(reachable: bool | None) -> str:
    return {True: "yes", False: "[red]no[/]", None: "not asked"}[reachable]


def _age(seconds: float | None) -> str:
    return "-" if seconds is None else human_duration(seconds)


def _text(value: object) -> str:
    return "-" if value is None else escape(str(value))


def _check(check: dict[str, Any] | None) -> str:
    if check is None:
        return "never"
    word = "ok" if check["ok"] else "[red]errors[/]"
    cycle = f", {escape(check['cycle'])}" if check.get("cycle") else ""
    return f"{word} {_age(check['age_s'])} ago{cycle}"


def _lock(target: dict[str, Any]) -> str:
    if target["offline"]:
        return "offline copy"
    if target["immutable"] is None:
        return "-" if target["kind"] != "s3" else "not read"
    if not target["immutable"]:
        return "no"
    until = f" until {target['locked_until'][:10]}" if target["locked_until"] else ""
    return f"yes{until}"
