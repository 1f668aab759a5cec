"""Every Click option that more than one command takes, declared once (the pip-tools way)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def target(help_text: str = "Only this target (by its name in the policy).", required: bool = False) -> Decorator:
    return click.option("--target", "target_name", metavar="NAME", required=required, help=help_text)


def timeout(help_text: str) -> Decorator:
    return click.option("--timeout", "timeout_s", type=click.FloatRange(min=1, max=3600), metavar="SECONDS",
                        help=f"{help_text}  [default: 30]")


def html_page(help_text: str) -> Decorator:
    return click.option("--html", type=click.Path(path_type=Path, dir_okay=False), metavar="FILE", help=help_text)


def snapshot(help_text: str) -> Decorator:
    return click.option("--snapshot", default="latest", show_default=True, metavar="ID|latest", help=help_text)


def database(help_text: str = "Which database of the policy (when it has several).") -> Decorator:
    return click.option("--database", metavar="NAME", help=help_text)


def server(default_text: str) -> Decorator:
    return click.option("--server", type=click.Choice(["source", "recovery"]), default=None,
                        help=f"Restore on the policy's own database server or on its recovery_server; {default_text}")


def server_overrides() -> Decorator:
    """--host, --port and --user: another server for this run only (the chosen server's password is used)."""
    def apply(command: Callable[..., Any]) -> Callable[..., Any]:
        command = click.option("--user", "server_user", metavar="ROLE",
                               help="Log in as this role instead of the server's user in the policy.")(command)
        command = click.option("--port", "server_port", type=click.IntRange(1, 65535), metavar="PORT",
                               help="That server's port, for this run only.")(command)
        return click.option("--host", "server_host", metavar="HOST",
                            help="Restore on this host instead, with the chosen server's settings and password "
                                 "(for the night neither server in the policy is right).")(command)
    return apply


def dry_run(help_text: str) -> Decorator:
    return click.option("--dry-run", is_flag=True, help=help_text)


JSON_HELP = "Machine-readable output on stdout: one JSON document, also on failure."


def json_output() -> Decorator:
    """--json after the command name too (`opsctl keys status --json`), same as before it."""
    return click.option("--json", "json_output", is_flag=True, help=JSON_HELP)


if TYPE_CHECKING:
    _TimeParam = click.ParamType[datetime, Any]
else:  # ParamType is generic only in newer click releases (pyproject allows click>=8.1)
    _TimeParam = click.ParamType


class Moment(_TimeParam):
    """A point in time: '2026-11-20 03:00' (this machine's time zone) or ISO 8601 with a zone."""

    name = "TIME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            moment = datetime.fromisoformat(value.strip())
            # Local time of the first or last day there is can fall outside the calendar once zoned.
            return moment if moment.tzinfo else moment.astimezone()
        except (ValueError, OverflowError, OSError):
            self.fail(f"'{value}' is not a time; write it like \"2026-11-20 03:00\" (local time) "
                      "or 2026-11-20T03:00:00+00:00", param, ctx)
