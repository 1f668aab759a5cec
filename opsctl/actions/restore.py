"""opsctl restore: the on-call path. Plan, confirm, restore into a new database, verify, then say what to do next."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rich.markup import escape

from opsctl.actions import history
from opsctl.actions.context import App, Session
from opsctl.actions.locate import Located, locate, locate_on
from opsctl.actions.outcome import AuditFacts, Outcome, TargetResult, plain
from opsctl.actions.recovery import PhaseClock, check_room, check_row_counts, fetch, load_snapshot, prove
from opsctl.actions.runner import Command, Secrets
from opsctl.actions.servers import ServerChoice, source_on, sources_on
from opsctl.audit import runs
from opsctl.audit.runs import Fact
from opsctl.errors import BadInput, IntegrityError, OpsctlError
from opsctl.manifest import Manifest
from opsctl.policy.durations import human_duration
from opsctl.reports import recovery_view as view
from opsctl.reports import runbook
from opsctl.reports.console import human_bytes
from opsctl.sources import Destination, Source


@dataclass(frozen=True)
class RestoreRequest:
    snapshot: str = "latest"
    at: datetime | None = None
    to: str | None = None
    target: str | None = None
    database: str | None = None
    replace: bool = False
    confirm_source: str | None = None
    yes: bool = False
    verify: bool = True
    server: ServerChoice = field(default_factory=ServerChoice)  # default: the policy's own server


@dataclass(frozen=True)
class RestorePlan:
    """What the restore will do, shown before it does anything."""

    database: str
    engine: str
    snapshot_id: str
    snapshot_time: datetime
    age_s: float
    size_bytes: int | None
    target: str
    location: str
    reason: str
    others: tuple[str, ...]
    destination: str
    replaces: bool
    verify: bool
    estimate_s: float | None
    estimate_basis: str


@dataclass(frozen=True)
class RestoreResult:
    plan: RestorePlan
    destination: str
    dump_sha256: str
    tables: int
    rows: int
    verification: str
    rows_checked: bool
    duration_s: float
    moved_aside: str | None
    next_steps: tuple[str, ...]


@dataclass(frozen=True)
class Restored(Outcome):
    """A restore that was verified (as asked) and put in place, with the runbook's next steps."""

    result: RestoreResult
    details: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = plain(self.result)
        return document

    def target_results(self) -> list[TargetResult[None]]:
        plan = self.result.plan
        return [TargetResult(plan.target, plan.location, duration_s=self.result.duration_s)]

    def audit(self) -> AuditFacts:
        return AuditFacts(targets=(self.result.plan.location,), snapshot_ids=(self.result.plan.snapshot_id,),
                          details=self.details)

    def target_facts(self) -> dict[str, dict[str, Fact]]:
        """A restore that proved the copy equals the backup verified that snapshot on its target."""
        plan = self.result.plan
        if not self.result.rows_checked:
            return {}
        return {plan.target: {runs.VERIFIED + plan.database: plan.snapshot_time.isoformat(timespec="seconds")}}

    def show(self, app: App) -> None:
        show_restore(app, self.result)


def _precheck(app: App, request: RestoreRequest) -> None:
    if request.at is not None and request.snapshot != "latest":
        raise BadInput("give either --snapshot or --at, not both", "--at picks the newest snapshot at or before a time")
    if not request.yes and not view.can_ask(app):
        raise BadInput("a restore asks for confirmation first, and there is no terminal to ask on",
                       "check the plan on a terminal, or pass --yes to restore without asking (scripts)")


def _restore_command(session: Session, request: RestoreRequest) -> Restored:
    app = session.app
    source = source_on(session, request.server, request.database)
    clock = PhaseClock()
    with clock.phase("locate"):
        located = _locate(session, source, request)
        check_room(session, source, located.repository, located.snapshot, located.size_bytes)
    session.attempting(located.target.display, located.snapshot.short_id)
    destination = source.destination(request.to or _free_name(source, located))
    refuse_unsafe(destination, source, request)
    plan = _plan(session, source, located, destination, request)
    show_restore_plan(app, plan)
    if not request.yes and not view.confirm(app, "Restore now?"):
        raise OpsctlError("not restored: you answered no, and nothing was changed", None)
    result = _restore(session, source, located, destination, plan, verify=request.verify, clock=clock)
    return Restored(result, {"destination": destination.display, "moved_aside": result.moved_aside,
                             "verification": result.verification, "engine": source.engine,
                             "dump_bytes": plan.size_bytes, "recovery_s": clock.recovery_s(),
                             "phases": {name: round(s, 3) for name, s in clock.seconds.items()}})


def _locate(session: Session, source: Source, request: RestoreRequest) -> Located:
    if request.target is None:
        return locate(session, source, request.snapshot, request.at)
    target = session.target(session.target_configs(request.target)[0])
    return locate_on(session, source, target, request.snapshot, request.at)


def _free_name(source: Source, located: Located) -> str:
    """restored_<snapshot time>, with a counter when an earlier restore of the same snapshot took that name."""
    stamp = f"restored_{located.snapshot.time.astimezone(UTC):%Y%m%d_%H%M%S}"
    for counter in range(1, 100):
        name = source.restore_name(stamp if counter == 1 else f"{stamp}_{counter}")
        if not source.exists(name):
            return name
    raise BadInput(f"{source.restore_name(stamp)} and 98 more restored copies of this snapshot exist already",
                   "choose a name with --to, or remove old restored copies")


def _plan(session: Session, source: Source, located: Located, destination: Destination,
          request: RestoreRequest) -> RestorePlan:
    snapshot = located.snapshot
    size = located.size_bytes
    if size is None:
        size = session.restic.file_size(located.repository, snapshot.id, "/" + source.file_name)
    guess = history.estimate(session.state_dir, source.engine, size)
    return RestorePlan(
        database=source.database, engine=source.engine, snapshot_id=snapshot.short_id, snapshot_time=snapshot.time,
        age_s=(datetime.now(UTC) - snapshot.time).total_seconds(), size_bytes=size,
        target=located.target.name, location=located.target.display, reason=located.reason, others=located.others,
        destination=destination.display, replaces=destination.exists,
        verify=request.verify, estimate_s=guess.seconds, estimate_basis=guess.basis)


def _restore(session: Session, source: Source, located: Located, destination: Destination, plan: RestorePlan, *,
             verify: bool, clock: PhaseClock) -> RestoreResult:
    """Into a staging database first: only a restore that verified is put in place."""
    started = time.monotonic()
    with fetch(session, source, located.repository, located.snapshot) as chunks:
        staging = source.create_staging(destination, located.snapshot.tag_map())
        try:
            manifest = load_snapshot(session, source, chunks, staging, clock=clock, total=plan.size_bytes)
            with clock.phase("verify"):
                verification = verify_restored(session, source, staging, manifest, located, verify=verify)
            refuse_if_changed(destination, source.destination(destination.name))
            aside = source.publish(staging, destination)
        except BaseException:
            source.discard(staging)
            raise
    return RestoreResult(
        plan=plan, destination=destination.display, dump_sha256=manifest.dump_sha256,
        tables=len(manifest.facts.tables), rows=manifest.facts.total_rows, verification=verification,
        rows_checked=verify,
        duration_s=round(time.monotonic() - started, 3), moved_aside=aside,
        next_steps=runbook.next_steps(source.engine, destination, aside))


def verify_restored(session: Session, source: Source, staging: str, manifest: Manifest, located: Located, *,
            verify: bool) -> str:
    """Prove the restored data equals the backup; an old snapshot gets its row counts checked, --no-verify nothing
    more."""
    if verify and manifest.facts.fingerprint_salt:
        comparison = prove(session, source, staging, manifest, located.snapshot)
        if not comparison.ok:
            raise IntegrityError("the restored database does not equal the backup: "
                                 + "; ".join(comparison.problems[:5]),
                                 "nothing was put in place; restore an earlier snapshot, or from another target "
                                 "with --target")
        rest = len(comparison.tables) - comparison.proven
        if rest:
            shown = "; ".join(comparison.notes[:_NOTES_SHOWN]) + (
                f"; and {len(comparison.notes) - _NOTES_SHOWN} more" if len(comparison.notes) > _NOTES_SHOWN else "")
            return (f"yes: {_tables(comparison.proven)} equal the backup value by value; {_tables(rest)} by row "
                    f"count or presence only{f' ({shown})' if shown else ''}")
        return f"yes: all {_tables(len(comparison.tables))} equal the backup, value by value"
    if not verify:  # the dump's SHA-256 was checked on the way in; counting every table would add minutes
        return "no (--no-verify): only the dump's SHA-256 and size were checked; run opsctl verify later"
    check_row_counts(manifest, source.row_counts(staging))
    return "row counts only: this snapshot predates opsctl's fingerprints"


_NOTES_SHOWN = 3  # the runbook names a few tables proven by count only, then how many more


def _tables(count: int) -> str:
    return f"{count} table" + ("" if count == 1 else "s")


def refuse_unsafe(destination: Destination, source: Source, request: RestoreRequest) -> None:
    """Never overwrite data without being told to, and the source only when told by name."""
    if destination.is_source and not (request.replace and request.confirm_source == source.database):
        raise BadInput(
            f"{destination.display} is the database this policy backs up; refusing to restore over it",
            "restore into a new name (leave out --to); if you really mean to replace the live database, stop the "
            f"application and pass --replace --confirm-source {source.database}",
        )
    if destination.exists and not destination.empty and not request.replace:
        raise BadInput(
            f"{destination.display} already exists and is not empty",
            "choose a new name with --to, or pass --replace (the current one is kept, renamed aside)",
        )


def refuse_if_changed(before: Destination, now: Destination) -> None:
    """The restore may take hours: what was checked at the start must still hold before publishing."""
    if (now.exists, now.empty) != (before.exists, before.empty):
        raise BadInput(f"{before.display} changed while the restore ran; nothing was replaced",
                       "look at it, then run the restore again")


def show_restore_plan(app: App, plan: RestorePlan) -> None:
    """Everything the restore will do, before it does anything (on stderr: stdout stays the result)."""
    out = app.err
    size = human_bytes(plan.size_bytes) if plan.size_bytes is not None else "size unknown"
    out.print("[bold]Restore plan[/]")
    out.print(f"  snapshot   {plan.snapshot_id} of {escape(plan.database)}, taken "
              f"{plan.snapshot_time:%Y-%m-%d %H:%M:%S %Z} ({human_duration(plan.age_s)} ago), {size}")
    out.print(f"  from       {escape(plan.location)} — {escape(plan.reason)}")
    for other in plan.others:
        out.print(f"             not used: {escape(other)}")
    new = "a new file" if plan.engine == "sqlite" else "a new database"
    action = "REPLACES it (the current one is kept, renamed aside)" if plan.replaces else new
    out.print(f"  into       {escape(plan.destination)} — {action}")
    check = "verify it equals the backup, table by table" if plan.verify else "no verification (--no-verify)"
    out.print(f"  then       {check}; only then is it put in place")
    if plan.estimate_s is None:
        out.print(f"  time       unknown: {escape(plan.estimate_basis)}")
    else:
        out.print(f"  time       about {human_duration(plan.estimate_s)} ({escape(plan.estimate_basis)})")


def show_restore(app: App, result: RestoreResult) -> None:
    """The runbook: what was restored, whether it verified, and the exact next steps."""
    plan, out = result.plan, app.out
    out.print(f"[bold green]Restored[/] {escape(plan.database)} from snapshot {plan.snapshot_id} "
              f"({plan.snapshot_time:%Y-%m-%d %H:%M:%S %Z}) on {escape(plan.target)} "
              f"in {human_duration(result.duration_s)}")
    out.print(f"  into        {escape(result.destination)}")
    counts = (f"row counts match the backup: {result.tables} tables, {result.rows:,} rows" if result.rows_checked
              else "row counts not checked")
    out.print(f"  checked     dump SHA-256 matches the manifest ({result.dump_sha256[:16]}…); {counts}")
    out.print(f"  verified    {escape(result.verification)}")
    if result.moved_aside:
        out.print(f"  the previous database was kept, renamed to {escape(result.moved_aside)} (opsctl never drops it)")
    out.print("[bold]Next steps[/]")
    for number, step in enumerate(result.next_steps, 1):
        out.print(f"  {number}. {escape(step)}")


# No run lock: the 3 a.m. restore must not wait for a nightly backup; restic's own locks keep them apart.
RESTORE = Command("restore", _restore_command, restic=True, secrets=Secrets.ALL, precheck=_precheck,
                  servers=lambda session, request: sources_on(session, request.server))
