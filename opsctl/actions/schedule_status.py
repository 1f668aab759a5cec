"""opsctl schedule status: every job's schedule, next and last run, and how that run really ended.

The outcome comes from opsctl's run record, not from systemd: a timer that fired is not a backup
that worked. A run that was due and never started (the host was off, the timer disabled, the
daemon stopped) is reported as missed, and skipped runs are counted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.markup import escape

from opsctl.actions import rotation
from opsctl.actions.context import App, Session
from opsctl.actions.outcome import AuditFacts, Outcome
from opsctl.actions.runner import Command
from opsctl.audit import runs
from opsctl.errors import ExitCode
from opsctl.policy.calendar import Calendar
from opsctl.policy.schedule import JOBS, check_parts, local_iso, next_run
from opsctl.schedule import systemd, units

# A run counts as missed once it is this late beyond its randomized delay (time to start and take the lock).
MISSED_AFTER = timedelta(minutes=10)


@dataclass(frozen=True)
class JobStatus:
    job: str
    when: str | None  # the normalized calendar, None when the job is off
    next_run: str | None
    last_outcome: str | None
    last_exit_code: int | None
    last_finished_at: str | None
    running_since: str | None
    missed_since: str | None  # the first due moment with no run started since
    skipped: int
    last_skip: str | None
    timer: str  # "enabled", "installed", "not installed", or systemd's word
    turn: str | None  # check: which part of the data the next run reads; verify: which target


@dataclass(frozen=True)
class ScheduleStatus(Outcome):
    jobs: tuple[JobStatus, ...]

    @property
    def exit_code(self) -> ExitCode:
        troubled = any(j.missed_since or j.last_outcome not in (None, "ok") for j in self.jobs if j.when)
        return ExitCode.FAILURE if troubled else ExitCode.OK

    def to_json(self) -> dict[str, Any]:
        return {"jobs": [asdict(j) for j in self.jobs]}

    def show(self, app: App) -> None:
        for j in self.jobs:
            show_job(app, j)

    def audit(self) -> AuditFacts:
        return AuditFacts()


def show_job(app: App, j: JobStatus) -> None:
    if j.when is None:
        app.out.print(f"[bold]{j.job}[/]: off")
        return
    last = (f"{j.last_outcome} (exit {j.last_exit_code}) at {j.last_finished_at}" if j.last_outcome
            else "never ran")
    app.out.print(f"[bold]{j.job}[/]: {escape(j.when)}; timer {j.timer}")
    app.out.print(f"  next run: {j.next_run}   last run: {last}")
    if j.running_since:
        app.out.print(f"  running since {j.running_since}")
    if j.missed_since:
        app.out.print(f"  [red]MISSED[/]: due at {j.missed_since} and no run has started since; check the timer "
                      "(systemctl list-timers) or the schedule run daemon")
    if j.skipped:
        app.out.print(f"  skipped {j.skipped} time(s), last at {j.last_skip}")
    if j.turn:
        app.out.print(f"  next turn: {j.turn}")


def _status(session: Session, _request: None) -> ScheduleStatus:
    jobs = session.policy.schedule.jobs()
    return ScheduleStatus(tuple(job_status(session, job, jobs.get(job)) for job in JOBS))


def job_status(session: Session, job: str, when: Calendar | None) -> JobStatus:
    """One job's line, from the policy, the run record, the rotation and (when it runs) systemd."""
    record = runs.read(session.state_dir, job)
    now = datetime.now(UTC)
    timer = _timer(session.policy.name, job)
    return JobStatus(
        job=job, when=when.normalized if when else None,
        next_run=local_iso(next_run(when, now)) if when else None,
        last_outcome=record.outcome if record else None, last_exit_code=record.exit_code if record else None,
        last_finished_at=record.finished_at if record else None,
        running_since=record.running.started_at if record and record.running else None,
        missed_since=_missed(when, record, session.policy.schedule.randomized_delay, now, timer),
        skipped=record.last_skip.count if record and record.last_skip else 0,
        last_skip=record.last_skip.at if record and record.last_skip else None,
        timer=timer.word, turn=_turn(session, job))


def _missed(when: Calendar | None, record: runs.CommandRun | None, delay: timedelta, now: datetime,
            timer: Timer) -> str | None:
    """The first run due after the last one ended that never started (one due while it still ran was
    skipped, not missed); with no run at all, a timer that fired and started nothing."""
    if when is None or (record is not None and record.running is not None):
        return None
    ended = record.last_ended() if record else None
    if ended is None:
        fired = timer.state.last_trigger if timer.state else None
        return local_iso(fired) if fired is not None and fired + delay + MISSED_AFTER < now else None
    skipped = datetime.fromisoformat(record.last_skip.at) if record and record.last_skip else None
    due = next_run(when, max(ended, skipped) if skipped else ended)
    return local_iso(due) if due is not None and due + delay + MISSED_AFTER < now else None


@dataclass(frozen=True)
class Timer:
    word: str
    state: systemd.TimerState | None = None


def _timer(policy: str, job: str) -> Timer:
    name = units.timer_name(policy, job)
    for user in (False, True):
        if (systemd.unit_folder(user) / name).is_file():
            state = systemd.timer_state(name, user)
            where = " (--user)" if user else ""
            if state is None:
                return Timer("installed" + where)
            return Timer(("enabled" if state.enabled else "installed, not enabled") + where, state)
    return Timer("not installed")


def _turn(session: Session, job: str) -> str | None:
    turn = rotation.read(session.state_dir)
    if job == "check":
        cycle = check_parts(session.policy.verification.read_data_subset)
        if cycle is None:
            return None
        return ", ".join(f"{t.name} part {turn.check_part(t.name, cycle)}/{cycle}" for t in session.policy.targets)
    if job == "verify":
        turns = rotation.verify_turns(session.policy)
        target, database = turns[turn.verify_next % len(turns)]
        return f"database {database} from target {target}"
    return None



SCHEDULE_STATUS = Command("schedule status", _status)
