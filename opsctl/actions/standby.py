"""opsctl standby: a read-only copy of the newest snapshot on the recovery server, for customer service.

A refresh restores into a staging copy, proves it equals the backup, and only then swaps it in
under the standby's stable name, so a support agent never reads a half-restored copy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.markup import escape

from opsctl.actions.context import App, Session
from opsctl.actions.locate import Located, locate, locate_on
from opsctl.actions.outcome import AuditFacts, Outcome, TargetResult, plain
from opsctl.actions.recovery import check_room, fetch, load_snapshot
from opsctl.actions.restore import verify_restored
from opsctl.actions.runner import Command, Secrets
from opsctl.actions.servers import ServerChoice, sources_on
from opsctl.audit import runs
from opsctl.audit.runs import Fact
from opsctl.durable import replace_synced
from opsctl.errors import BadInput, ExitCode, OpsctlError
from opsctl.policy.durations import human_duration
from opsctl.policy.model import Policy, SQLiteConfig
from opsctl.policy.trust import read_regular
from opsctl.sources import Source

_RECOVERY = ServerChoice("recovery")


@dataclass(frozen=True)
class StandbyRequest:
    database: str | None = None  # default: every database of the policy
    target: str | None = None  # default: the nearest healthy target


@dataclass(frozen=True)
class StandbyCopy:
    """One database's standby as a refresh left it."""

    database: str
    name: str
    where: str
    snapshot_id: str
    snapshot_time: datetime
    refreshed_at: datetime
    target: str
    location: str
    verification: str
    readers: tuple[str, ...]
    replaced: str | None = None


@dataclass(frozen=True)
class StandbyRefreshed(Outcome):
    copies: tuple[StandbyCopy, ...]

    def to_json(self) -> dict[str, Any]:
        return {"standbys": [plain(copy) for copy in self.copies]}

    def target_results(self) -> list[TargetResult[None]]:
        return [TargetResult(copy.target, copy.location) for copy in self.copies]

    def target_facts(self) -> dict[str, dict[str, Fact]]:
        """A standby proven equal to its backup verified that snapshot, as a restore does."""
        facts: dict[str, dict[str, Fact]] = {}
        for copy in self.copies:
            facts.setdefault(copy.target, {})[runs.VERIFIED + copy.database] = \
                copy.snapshot_time.isoformat(timespec="seconds")
        return facts

    def audit(self) -> AuditFacts:
        return AuditFacts(targets=tuple(sorted({copy.location for copy in self.copies})),
                          snapshot_ids=tuple(copy.snapshot_id for copy in self.copies),
                          details={"standbys": [{"database": c.database, "name": c.name, "where": c.where,
                                                 "readers": list(c.readers)} for c in self.copies]})

    def show(self, app: App) -> None:
        for copy in self.copies:
            taken = f"{copy.snapshot_time:%Y-%m-%d %H:%M:%S %Z}"
            app.out.print(f"[bold green]Standby refreshed[/] {escape(copy.name)} on {escape(copy.where)}: snapshot "
                          f"{copy.snapshot_id} of {escape(copy.database)}, taken {taken}, from {escape(copy.target)}")
            app.out.print(f"  verified    {escape(copy.verification)}")
            app.out.print(f"  readers     {escape(', '.join(copy.readers) or 'nobody but the recovery user')} "
                          "(read-only)")
            if copy.replaced:
                app.out.print("  the previous standby was swapped out and dropped")


def _refresh(session: Session, request: StandbyRequest) -> StandbyRefreshed:
    copies = []
    for source in _sources(session, request):
        copies.append(_refresh_one(session, source, request.target))
        _write_record(session.state_dir, copies[-1])
    return StandbyRefreshed(tuple(copies))


def _sources(session: Session, request: StandbyRequest) -> list[Source]:
    if session.policy.recovery_server is None:
        raise BadInput("a standby lives on the recovery server, and the policy sets no recovery_server",
                       "add recovery_server: (a second database server; for SQLite a folder) to the policy, "
                       "see policies/reference.yaml")
    found = sources_on(session, _RECOVERY)
    return [session.pick_source(found, request.database)] if request.database else found


def _refresh_one(session: Session, source: Source, target_name: str | None) -> StandbyCopy:
    located = _locate(session, source, target_name)
    session.attempting(located.target.display, located.snapshot.short_id)
    check_room(session, source, located.repository, located.snapshot, located.size_bytes)
    name = standby_name(session.policy, source)
    readers = session.policy.standby.readers
    with fetch(session, source, located.repository, located.snapshot) as chunks:
        staging = source.create_staging(source.destination(name), located.snapshot.tag_map())
        try:
            manifest = load_snapshot(session, source, chunks, staging, verb=f"standby: restoring {name}")
            verification = verify_restored(session, source, staging, manifest, located, verify=True)
            replaced = source.swap_standby(staging, name, readers)
        except BaseException:
            source.discard(staging)
            raise
    return StandbyCopy(database=source.database, name=name, where=source.where, snapshot_id=located.snapshot.short_id,
                       snapshot_time=located.snapshot.time, refreshed_at=datetime.now(UTC),
                       target=located.target.name, location=located.target.display, verification=verification,
                       readers=readers, replaced=replaced)


def _locate(session: Session, source: Source, target_name: str | None) -> Located:
    if target_name is None:
        return locate(session, source, "latest", None)
    target = session.target(session.target_configs(target_name)[0])
    return locate_on(session, source, target, "latest", None)


def standby_name(policy: Policy, source: Source) -> str:
    """crm_standby on a server; for SQLite the file crm_standby.sqlite3 in recovery_server.folder."""
    base = f"{source.database}{policy.standby.suffix}"
    if isinstance(policy.database, SQLiteConfig) and policy.recovery_server is not None \
            and policy.recovery_server.folder is not None:
        return str(policy.recovery_server.folder / f"{base}.sqlite3")
    return base


# --- the record a refresh leaves, and what status reads -------------------------------------------------------

def _record_path(state_dir: Path) -> Path:
    return state_dir / "standby.json"


def _read_records(state_dir: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(read_regular(_record_path(state_dir)).decode("utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): v for k, v in data.items() if isinstance(v, dict)} if isinstance(data, dict) else {}


def _write_record(state_dir: Path, copy: StandbyCopy) -> None:
    records = _read_records(state_dir)
    records[copy.database] = plain(copy)
    replace_synced(_record_path(state_dir), (json.dumps(records, indent=1, sort_keys=True) + "\n").encode())


@dataclass(frozen=True)
class StandbyView:
    """One database's standby as status finds it: the refresh's record and the server's answer."""

    database: str
    name: str
    where: str
    exists: bool
    read_only: bool
    readers: tuple[str, ...]
    snapshot_id: str | None = None
    snapshot_time: str | None = None
    refreshed_at: str | None = None
    age_s: float | None = None
    problem: str | None = None
    hint: str | None = None


@dataclass(frozen=True)
class StandbyStatus(Outcome):
    views: tuple[StandbyView, ...] = field(default_factory=tuple)

    @property
    def exit_code(self) -> ExitCode:
        healthy = all(v.exists and v.read_only and v.problem is None for v in self.views)
        return ExitCode.OK if healthy else ExitCode.FAILURE

    def to_json(self) -> dict[str, Any]:
        return {"standbys": [plain(view) for view in self.views]}

    def show(self, app: App) -> None:
        for view in self.views:
            _show_view(app, view)


def _show_view(app: App, view: StandbyView) -> None:
    out = app.out
    if view.problem is not None:
        out.print(f"[bold red]{escape(view.name)}[/] on {escape(view.where)}: {escape(view.problem)}")
        if view.hint:
            out.print(f"  what to do  {escape(view.hint)}")
        return
    out.print(f"[bold]{escape(view.name)}[/] on {escape(view.where)}"
              + ("" if view.read_only else " [bold red]NOT read-only[/]"))
    if view.snapshot_id is not None and view.age_s is not None:
        out.print(f"  holds       snapshot {view.snapshot_id} of {escape(view.database)}, taken {view.snapshot_time}: "
                  f"the data is {human_duration(view.age_s)} old")
        out.print(f"  refreshed   {view.refreshed_at}")
    out.print(f"  readers     {escape(', '.join(view.readers) or 'nobody but the recovery user')}")


def _status(session: Session, request: StandbyRequest) -> StandbyStatus:
    records = _read_records(session.state_dir)
    views = [_view(session, source, records.get(source.database)) for source in _sources(session, request)]
    return StandbyStatus(tuple(views))


def _view(session: Session, source: Source, record: dict[str, Any] | None) -> StandbyView:
    name = standby_name(session.policy, source)
    try:
        state = source.standby_state(name)
    except OpsctlError as exc:
        return StandbyView(source.database, name, source.where, exists=False, read_only=False, readers=(),
                           problem=f"cannot be looked at: {exc.message}", hint=exc.hint)
    if state is None:
        return StandbyView(source.database, name, source.where, exists=False, read_only=False, readers=(),
                           problem="there is no standby yet", hint="run: opsctl standby refresh")
    view = StandbyView(source.database, name, source.where, exists=True, read_only=state.read_only,
                       readers=state.readers)
    if record is None or record.get("name") != name:
        return view
    taken = str(record.get("snapshot_time"))
    try:
        age = (datetime.now(UTC) - datetime.fromisoformat(taken)).total_seconds()
    except ValueError:
        return view
    return replace(view, snapshot_id=str(record.get("snapshot_id")), snapshot_time=taken,
                   refreshed_at=str(record.get("refreshed_at")), age_s=age)


# The policy lock: a refresh and a verify both copy the whole database onto the recovery server.
STANDBY_REFRESH = Command("standby refresh", _refresh, lock=True, restic=True, secrets=Secrets.ALL,
                          servers=_sources)
STANDBY_STATUS = Command("standby status", _status, secrets=Secrets.ALL, servers=_sources)
