"""`opsctl fleet status` on a terminal and as the auditor's page: the verdict, one row per host, then each host's
problem with what to do. Every text a host's document or the storage chose is shown without control characters.
"""

from __future__ import annotations

import re
from typing import Any

from rich.markup import escape
from rich.table import Table

from opsctl.compliance.fleet import FORMAT
from opsctl.policy.compliance import RULES
from opsctl.policy.durations import human_duration
from opsctl.reports.console import Terminal

_STYLE = {"PASS": "green", "FAIL": "red", "UNKNOWN": "yellow"}
# Control characters (and C1 codes): shown as "?", never sent to a terminal or a page.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
GENERATOR = "opsctl fleet status"  # in the page's <meta name="generator">: how opsctl knows the page as its own


def shown(text: object) -> str:
    """Text a host's document or the storage chose, without control characters (terminal escapes)."""
    return _CONTROL.sub("?", str(text))


def show_fleet(app: Terminal, answer: dict[str, Any]) -> None:
    """The verdict line, the table, each host's problem and what to do, then what the listing passed over."""
    verdict = answer["verdict"]
    app.out.print(f"[bold {_STYLE[verdict]}]{verdict}[/]  fleet at {escape(shown(answer['location']))}: "
                  f"{escape(shown(answer['summary']))}")
    if answer["hosts"]:
        app.out.print(_table(answer["hosts"]))
    for host in answer["hosts"]:
        if host["problem"]:
            app.out.print(f"[{_STYLE[host['status']]}]{escape(shown(host['host']))}[/] "
                          f"({escape(shown(host['policy']))}): {escape(shown(host['problem']))}")
            if host["hint"]:
                app.out.print(f"  what to do: {escape(shown(host['hint']))}")
    for note in notes(answer):
        app.out.print(escape(shown(note)))
    if answer["error"]:
        app.err.print(f"[red]error:[/] {escape(shown(answer['error']))}")
        if answer["hint"]:
            app.err.print(f"  what to do: {escape(shown(answer['hint']))}")
    for path in answer["files"]:
        app.out.print(f"written: {escape(path)}")


def rule_names(hosts: list[dict[str, Any]]) -> list[str]:
    """Every rule some host reports: opsctl's own in their order, then any a newer opsctl added."""
    seen = {r["rule"] for host in hosts for r in host["rules"]}
    return [r for r in RULES if r in seen] + sorted(seen - set(RULES))


def rule_cell(host: dict[str, Any], rule: str) -> str:
    """PASS, FAIL or UNKNOWN; in parentheses when that host's policy does not require the rule; - when absent."""
    found = next((r for r in host["rules"] if r["rule"] == rule), None)
    if found is None:
        return "-"
    return found["status"] if found["required"] else f"({found['status']})"


def ago(seconds: float | None, never: str = "never") -> str:
    """'5h12m ago', or `never` when there is no such moment."""
    return never if seconds is None else f"{human_duration(seconds)} ago"


def drill_cell(drill: dict[str, Any] | None) -> str:
    """The last drill: passed or FAILED, and how long ago."""
    if drill is None:
        return "never"
    return f"{'passed' if drill['ok'] else 'FAILED'} {ago(drill['age_s'])}"


def notes(answer: dict[str, Any]) -> list[str]:
    """What the listing passed over, and the legend for rules a host does not require."""
    said = []
    if any(not r["required"] for host in answer["hosts"] for r in host["rules"]):
        said.append("(...): a rule that host's policy does not require; it does not change the verdict")
    if answer["ignored"]:
        said.append(f"ignored {answer['ignored']} entr{'y' if answer['ignored'] == 1 else 'ies'} in the fleet folder: "
                    "names opsctl never writes there (or not a folder where a policy's is); none was read")
    if answer["interrupted"]:
        said.append(f"{answer['interrupted']} interrupted publish{'' if answer['interrupted'] == 1 else 'es'} (a "
                    "half-written .<host>.json.<hex>.tmp: a job was killed while it wrote its status); that host's "
                    "next job removes it after an hour")
    if answer["cut"]:
        said.append(f"{', '.join(answer['cut'])} held more entries than opsctl reads (more than any fleet): listed "
                    "only in part, so hosts may be missing and the fleet is not PASS; find out who fills it, and "
                    "remove what opsctl did not write with an administrator's keys")
    return said


def _table(hosts: list[dict[str, Any]]) -> Table:
    rules = rule_names(hosts)
    table = Table("Host", "Policy", "Databases", *rules, "Verified backup", "Last drill", "Published", "Stale",
                  title="Hosts", title_justify="left")
    for host in hosts:
        style = _STYLE[host["status"]]
        table.add_row(f"[{style}]{escape(shown(host['host']))}[/]", escape(shown(host["policy"])),
                      escape(shown(", ".join(host["databases"]) or "-")),
                      *(_styled(rule_cell(host, rule)) for rule in rules),
                      ago(host["newest_verified_age_s"]), _styled(drill_cell(host["drill"])),
                      ago(host["published_age_s"], host["state"]), "[red]STALE[/]" if host["stale"] else "no")
    return table


def _styled(cell: str) -> str:
    for word, style in (("FAIL", "red"), ("UNKNOWN", "yellow")):
        if word in cell:
            return f"[{style}]{escape(cell)}[/]"
    return escape(cell)


def render_html(answer: dict[str, Any], made: dict[str, str]) -> str:
    """The auditor's page of the same table (autoescaped: a host's document never becomes markup)."""
    from opsctl.reports import sealed  # jinja2 is loaded only when a page is asked for

    rules = rule_names(answer["hosts"])
    hosts = [{**host, "rules": {r: rule_cell(host, r) for r in rules}} for host in answer["hosts"]]
    return sealed.template("fleet.html.j2").render(
        a=answer, hosts=hosts, rules=rules, notes=notes(answer), made=made,
        ago=ago, drill=drill_cell, shown=shown, generator=GENERATOR, format=FORMAT)
