"""opsctl drill: rehearse losing the site. Restore from the off-site copy, verify, measure RTO and RPO, report."""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from opsctl.actions import history
from opsctl.actions.context import App, Session, as_operator_error
from opsctl.actions.locate import locate_on
from opsctl.actions.outcome import AuditFacts, Outcome, Problem, TargetResult
from opsctl.actions.recovery import PhaseClock, check_room, fetch, load_snapshot, prove, scratch
from opsctl.actions.runner import Command, Secrets
from opsctl.actions.servers import ServerChoice, sources_on
from opsctl.audit.runs import Fact, verification_facts
from opsctl.errors import BadInput, ExitCode
from opsctl.policy.durations import human_duration
from opsctl.policy.model import Objectives
from opsctl.policy.model import Target as TargetConfig
from opsctl.reports import drill as drill_report
from opsctl.reports import recovery_view as view
from opsctl.reports import signing
from opsctl.reports.records import DrillReport
from opsctl.reports.sealed import FAILED, PASSED
from opsctl.sources import Source
from opsctl.targets import Target


@dataclass(frozen=True)
class DrillRequest:
    target: str | None = None
    snapshot: str = "latest"
    database: str | None = None
    server: ServerChoice = field(default_factory=ServerChoice)  # default: the recovery server, when there is one


@dataclass
class DatabaseDrill:
    """One database's part of the drill: its snapshot, phase times, and whether it verified."""

    source: Source
    clock: PhaseClock = field(default_factory=PhaseClock)
    facts: dict[str, Any] = field(default_factory=dict)
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    error: str | None = None
    hint: str | None = None
    ready_at: float | None = None
    cleanup_s: float = 0.0

    @property
    def verified(self) -> bool:
        return self.error is None and self.ready_at is not None and not self.problems


@dataclass(frozen=True)
class Drilled(Outcome):
    """The sealed drill report (verdict, RTO, RPO, phases, advice) and where it was written."""

    report: DrillReport
    files: tuple[Path, ...]
    details: dict[str, Any]

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.OK if self.report.verdict == PASSED else ExitCode.FAILURE

    def to_json(self) -> dict[str, Any]:
        return {**self.report.to_json(), "files": [str(p) for p in self.files]}

    def target_results(self) -> list[TargetResult[None]]:
        failed = self.exit_code != ExitCode.OK
        return [TargetResult(self.report.target, self.report.location,
                             problem=Problem(self.report.summary, None) if failed else None,
                             duration_s=self.report.measured.rto_s or 0.0)]

    def target_facts(self) -> dict[str, dict[str, Fact]]:
        """The snapshots proven on the drill's target, and the RTO and RPO it measured."""
        proven: dict[str, Fact] = {}
        for row in self.report.databases:
            proven.update(verification_facts(row.database, row.verdict == PASSED, self.report.finished_at,
                                             row.snapshot_time))
        return {self.report.target: {**proven, "rto_s": self.report.measured.rto_s,
                                     "rpo_s": self.report.measured.rpo_s}}

    def audit(self) -> AuditFacts:
        snapshots = tuple(row.snapshot_id for row in self.report.databases if row.snapshot_id)
        return AuditFacts(targets=(self.report.location,), snapshot_ids=snapshots,
                          error=None if self.exit_code == ExitCode.OK else self.report.summary,
                          details=self.details)

    def show(self, app: App) -> None:
        view.show_drill(app, self.report, self.files)


def _drill(session: Session, request: DrillRequest) -> Drilled:
    config = drill_target(session, request.target)
    with session.cold_restic_cache():
        started, clock, setup = datetime.now(UTC), time.monotonic(), PhaseClock()
        with setup.phase("locate"):  # part of the recovery too: a real restore starts the same way
            _ = session.restic.version
            target = session.target(config)
            session.attempting(target.display)
            sources = _sources(session, request)
        runs = [_drill_one(session, source, target, request.snapshot) for source in sources]
        content = _content(session, config, target, started=started, clock=clock,
                           clocks=[setup, *(run.clock for run in runs)], runs=runs)
        report = drill_report.build(content, signing.signer_or_warn(session.policy))
        paths = drill_report.write(report, session.state_dir / "reports", session.policy.report_group)
    return Drilled(report, paths, _audit_details(report, runs, paths))


@dataclass(frozen=True)
class DrillHistory(Outcome):
    drills: tuple[history.PastDrill, ...]

    def show(self, app: App) -> None:
        show_drill_history(app, list(self.drills))


def _drill_history(session: Session, _: None) -> DrillHistory:
    return DrillHistory(tuple(history.past_drills(session.state_dir)))


def drill_target(session: Session, name: str | None) -> TargetConfig:
    """The named target, or the policy's off-site one: the copy that is left when the site is gone."""
    if name is not None:
        return session.target_configs(name)[0]
    offsite = [config for config in session.policy.targets if config.offsite]
    if not offsite:
        raise BadInput("a drill restores from the off-site copy, and no target of the policy is marked off-site",
                       "add offsite: true to the target that survives losing the site (targets[].offsite), "
                       "or choose one with --target NAME")
    return offsite[0]


def _sources(session: Session, request: DrillRequest) -> list[Source]:
    found = sources_on(session, request.server, prefers_recovery=True)
    return [session.pick_source(found, request.database)] if request.database else found


def _drill_one(session: Session, source: Source, target: Target, wanted: str) -> DatabaseDrill:
    """Locate, fetch and restore into a scratch database, verify, drop it; failures become part of the result."""
    run = DatabaseDrill(source)
    try:
        with run.clock.phase("locate"):
            located = locate_on(session, source, target, wanted, None)
        snapshot = located.snapshot
        run.facts.update(snapshot_id=snapshot.short_id, snapshot_time=snapshot.time)
        with run.clock.phase("locate"):
            check_room(session, source, located.repository, snapshot, located.size_bytes)
        with ExitStack() as stack:
            with run.clock.phase("restore"):  # creating the database is part of restoring it
                chunks = stack.enter_context(fetch(session, source, located.repository, snapshot))
                staging = stack.enter_context(scratch(session, source, snapshot, "drill"))
            manifest = load_snapshot(session, source, chunks, staging, verb="drill: restoring", clock=run.clock)
            run.facts.update(dump_bytes=manifest.dump_bytes, manifest_sha256=manifest.sha256,
                             tables=len(manifest.facts.tables), rows=manifest.facts.total_rows)
            with run.clock.phase("verify"):
                proof = prove(session, source, staging, manifest, snapshot)
                run.problems, run.notes = proof.problems, proof.notes
            run.ready_at = ready_at = time.monotonic()
        run.cleanup_s = time.monotonic() - ready_at
    except Exception as exc:  # noqa: BLE001 - a server that vanishes mid-drill is a finding, reported like any other
        failure = as_operator_error(exc, f"drill of {source.database}")
        run.error, run.hint = failure.message, failure.hint
    return run


def _content(session: Session, config: TargetConfig, target: Target, *, started: datetime, clock: float,
             clocks: list[PhaseClock], runs: list[DatabaseDrill]) -> dict[str, Any]:
    objectives = session.policy.objectives
    rto: float | None = None
    rpo: float | None = None
    last_ready = runs[-1].ready_at
    if all(run.verified for run in runs) and last_ready is not None:  # verified: ready_at is set
        # The scratch databases dropped after each verification are not part of the recovery.
        rto = last_ready - clock - sum(run.cleanup_s for run in runs[:-1])
        rpo = max((started - run.facts["snapshot_time"]).total_seconds() for run in runs)
    measured = {"rto_s": _round(rto), "rpo_s": _round(rpo)}
    met = {"rto": None if rto is None else rto <= objectives.rto.total_seconds(),
           "rpo": None if rpo is None else rpo <= objectives.rpo.total_seconds()}
    phases = _total_phases(clocks, rto)
    verdict = PASSED if met["rto"] and met["rpo"] else FAILED
    advice = _advice(session, config, runs, measured=measured, met=met, phases=phases)
    now_point = {"date": started.isoformat(timespec="seconds"), **measured, "verdict": verdict}
    return {
        "verdict": verdict, "summary": _summary(config.name, runs, measured, met, objectives),
        "policy": session.policy.name, "target": config.name, "location": target.display, "offsite": config.offsite,
        "restored_on": runs[0].source.where, "started_at": started.isoformat(timespec="seconds"),
        "restic_version": f"restic {session.restic.version}",
        "objectives": {"rto_s": objectives.rto.total_seconds(), "rpo_s": objectives.rpo.total_seconds()},
        "measured": measured, "met": met, "phases": phases, "databases": [_database_row(run) for run in runs],
        "advice": advice, "trend": [*history.trend(session.state_dir), now_point],
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _total_phases(clocks: list[PhaseClock], rto: float | None) -> list[dict[str, Any]]:
    total = PhaseClock()
    for clock in clocks:
        for name, seconds in clock.seconds.items():
            total.seconds[name] += seconds
    return total.rows(rto)


def _database_row(run: DatabaseDrill) -> dict[str, Any]:
    facts = run.facts
    time_taken = facts.get("snapshot_time")
    return {"database": run.source.database, "engine": run.source.engine, "snapshot_id": facts.get("snapshot_id"),
            "snapshot_time": time_taken.isoformat(timespec="seconds") if time_taken else None,
            "dump_bytes": facts.get("dump_bytes"), "manifest_sha256": facts.get("manifest_sha256"),
            "tables": facts.get("tables", 0), "rows": facts.get("rows", 0),
            "verdict": PASSED if run.verified else FAILED, "error": run.error, "hint": run.hint,
            "problems": list(run.problems), "notes": list(run.notes), "phases": run.clock.rows()}


def _summary(target: str, runs: list[DatabaseDrill], measured: dict[str, Any], met: dict[str, bool | None],
             objectives: Objectives) -> str:
    failed = next((run for run in runs if not run.verified), None)
    if failed is not None:
        why = failed.error or (failed.problems[0] if failed.problems else "it did not verify")
        return (f"The restore of {failed.source.database} from {target} could not be proven, so nothing was measured: "
                f"{why}")
    rto, rpo = measured["rto_s"], measured["rpo_s"]
    rto_goal, rpo_goal = human_duration(objectives.rto.total_seconds()), human_duration(objectives.rpo.total_seconds())
    words = (f"RTO {human_duration(rto)} {'within' if met['rto'] else 'EXCEEDS'} {rto_goal}, "
             f"RPO {human_duration(rpo)} {'within' if met['rpo'] else 'EXCEEDS'} {rpo_goal}")
    if met["rto"] and met["rpo"]:
        return f"Restored from {target} and verified in {human_duration(rto)}; {words}."
    return f"Restored from {target} and verified, but the objectives were missed: {words}."


_PHASE_ADVICE = {
    "locate": "finding the snapshot is {share} of it: the target answered slowly; check its network and endpoint",
    "fetch": "waiting for data from {target} is {share} of it: consider a closer off-site target, more bandwidth "
             "to it, or restoring from a nearer copy when one survives (opsctl restore picks the nearest healthy one)",
    "restore": "the database's own restore is {share} of it: consider a faster restore server (CPU, disk) or one "
               "tuned for bulk loads, or a smaller database (archive old rows)",
    "verify": "verification is {share} of it: in a real outage, opsctl restore --no-verify brings the service back "
              "sooner (run opsctl verify afterwards)",
}


def _advice(session: Session, config: TargetConfig, runs: list[DatabaseDrill], *, measured: dict[str, Any],
            met: dict[str, bool | None], phases: list[dict[str, Any]]) -> list[str]:
    objectives, advice = session.policy.objectives, []
    for run in runs:
        if not run.verified:
            what = run.error or "; ".join(run.problems[:3])
            todo = run.hint or "restore an earlier snapshot, or check this target with opsctl check"
            advice.append(f"{run.source.database}: {what}. What to do: {todo}")
    rto_goal, rpo_goal = human_duration(objectives.rto.total_seconds()), human_duration(objectives.rpo.total_seconds())
    if met["rto"] is False:
        slowest = max(phases, key=lambda phase: phase["seconds"])
        share = f"{slowest['share']:.0%}"
        advice.append(f"RTO {human_duration(measured['rto_s'])} exceeds {rto_goal}: "
                      + _PHASE_ADVICE[slowest["name"]].format(share=share, target=config.name) + ".")
    if met["rpo"] is False:
        advice.append(f"RPO {human_duration(measured['rpo_s'])} exceeds {rpo_goal}: "
                      f"the newest snapshot on {config.name} was that old when the drill started. Back up at least "
                      f"every {rpo_goal}, and check that backups reach "
                      f"{config.name}: opsctl snapshots --target {config.name}.")
    return advice


def _audit_details(report: DrillReport, runs: list[DatabaseDrill], paths: tuple[Path, ...]) -> dict[str, Any]:
    phases = {phase.name: phase.seconds for phase in report.phases}
    return {"verdict": report.verdict, "target": report.target, "rto_s": report.measured.rto_s,
            "rpo_s": report.measured.rpo_s, "rto_objective_s": report.objectives.rto_s,
            "rpo_objective_s": report.objectives.rpo_s, "phases": phases,
            "engine": runs[0].source.engine if len(runs) == 1 else None, "restored_on": report.restored_on,
            "dump_bytes": sum(run.facts.get("dump_bytes") or 0 for run in runs),
            "recovery_s": round(sum(run.clock.recovery_s() for run in runs), 3),
            "report": str(paths[0]), "report_sha256": report.sha256}


def show_drill_history(app: App, rows: list[history.PastDrill]) -> None:
    if not rows:
        app.out.print("No drills recorded yet. Run: opsctl drill")
        return
    table = Table("date", "target", "snapshot", "RTO", "RPO", "verdict", "report")
    for row in rows:
        table.add_row(escape(row.time), escape(str(row.target)), escape(", ".join(row.snapshots) or "-"),
                      _against(row.rto_s, row.rto_objective_s), _against(row.rpo_s, row.rpo_objective_s),
                      escape(row.verdict), escape(row.report or "-"))
    app.out.print(table)


def _against(measured: float | None, objective: float | None) -> str:
    if measured is None:
        return "-"
    text = human_duration(measured)
    return text if objective is None else f"{text} / {human_duration(objective)}"


# No run lock: a drill only reads the repositories, and a backup running meanwhile is part of real life.
DRILL = Command("drill", _drill, secrets=Secrets.ALL, servers=_sources)
DRILL_HISTORY = Command("drill history", _drill_history)
