"""Helpers for the drill and disaster-restore tests: timed runs, snapshot times, drill reports, leftovers."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from tests.support.workspace import Result, Workspace


@dataclass(frozen=True)
class Timed:
    """An opsctl run with the wall-clock moments around it, as the person who ran it saw them."""

    result: Result
    started: datetime
    wall_s: float

    @property
    def payload(self) -> dict:
        return json.loads(self.result.stdout)


def timed(workspace: Workspace, *args: str, env: dict | None = None) -> Timed:
    started, clock = datetime.now(UTC), time.monotonic()
    result = workspace.opsctl(*args, env=env)
    return Timed(result, started, time.monotonic() - clock)


def drill(workspace: Workspace, *args: str, tamper: str | None = None) -> Timed:
    """`opsctl --json drill ...`; with `tamper`, a statement run in the scratch database before it is compared."""
    return timed(workspace, "--json", "drill", *args, env={"OPSCTL_TEST_TAMPER_SQL": tamper} if tamper else None)


def snapshots(workspace: Workspace, target: str | None = None) -> list[dict]:
    """This policy's snapshots (on one target, or all), oldest first, each with its time as a datetime."""
    args = ("--target", target) if target else ()
    result = workspace.opsctl("--json", "snapshots", *args)
    assert result.returncode == 0, result.output
    rows = [{**row, "time": datetime.fromisoformat(row["time"])} for row in json.loads(result.stdout)["snapshots"]]
    return sorted(rows, key=lambda row: row["time"])


def drill_reports(workspace: Workspace, suffix: str = ".json") -> list[Path]:
    folder = workspace.root / "state" / "reports"
    return sorted(folder.glob(f"drill-*{suffix}")) if folder.is_dir() else []


def sqlite_scratch_left(workspace: Workspace) -> list[Path]:
    """Anything a drill or verify left in the state folder's private scratch area."""
    folder = workspace.root / "state" / "tmp"
    return sorted(folder.rglob("*")) if folder.is_dir() else []


def pg_databases(pg_server, prefix: str) -> list[str]:
    with pg_server.connect() as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE starts_with(datname, %s) ORDER BY 1", (prefix,))
        return [row[0] for row in rows]


def mariadb_databases(server, prefix: str) -> list[str]:
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT schema_name FROM information_schema.schemata WHERE LEFT(schema_name, %s) = %s "
                    "ORDER BY 1", (len(prefix), prefix))
        return [row[0] for row in cur.fetchall()]
