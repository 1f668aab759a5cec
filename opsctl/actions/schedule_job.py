"""opsctl schedule job NAME: one scheduled run of a job, as a systemd timer or `schedule run` starts it.

It is the command a person would run (backup, prune, check, verify, drill) with three differences:
it waits for the policy only until its own next run is due, and then counts as skipped (visible
in `schedule status`), never queued; check and verify work in turns (rotation.py); and it always
takes the policy's run lock, so two jobs of one policy never run at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from opsctl.actions import backup, check, drill, prune, rotation, standby, verify
from opsctl.actions.context import Session
from opsctl.actions.outcome import Outcome
from opsctl.actions.runner import Command
from opsctl.audit import runs
from opsctl.policy.schedule import check_parts, local_iso, next_run
from opsctl.sources import Source

# A job waits for the run before it until its own next run is due (at least a second), never longer than a day.
SHORTEST_WAIT_S = 1.0
LONGEST_WAIT_S = 86400.0
# A skipped run still records and notifies (up to 30 s, a command channel up to 65 s) and must be gone when
# the next starts: systemd would fold a start into a service still finishing, and that run would never happen.
HAND_OVER_S = 120.0
# When this process started: a job's run starts at its slot (plus the randomized delay), whatever it waited.
_PROCESS_STARTED = datetime.now(UTC)


def job_command(job: str) -> Command[None]:
    """The scheduled form of a job's command: same name, secrets and records, a request made in turn."""
    base, body = _JOBS[job]
    return Command(base.name, _noting_overlaps(job, body), lock=True, secrets=base.secrets, restic=base.restic,
                   access=base.access, scheduled=True, lock_wait=_until_next_due(job), servers=_servers(job, base))


def _servers(job: str, base: Command[Any]) -> Callable[[Session, None], list[Source]] | None:
    """The servers the job's command uses by default (verify and drill: the recovery server, when there is one)."""
    uses = base.servers
    if uses is None:
        return None
    request = _DEFAULT_REQUESTS[job]
    return lambda session, _: uses(session, request)


def _until_next_due(job: str) -> Callable[[Session], float]:
    def wait_s(session: Session) -> float:
        when = session.policy.schedule.jobs().get(job)
        now = datetime.now(UTC)
        due = next_run(when, now) if when is not None else None
        if due is None:  # run by hand while off in the schedule (or never due again): wait as any command does
            return session.policy.lock_wait.total_seconds()
        return min(max((due - now).total_seconds() - HAND_OVER_S, SHORTEST_WAIT_S), LONGEST_WAIT_S)
    return wait_s


def _noting_overlaps(job: str, body: Callable[[Session, None], Outcome]) -> Callable[[Session, None], Outcome]:
    def run(session: Session, request: None) -> Outcome:
        _note_overlap(session, job)
        return body(session, request)
    return run


def _note_overlap(session: Session, job: str) -> None:
    """Count a run that came due while the previous one still ran as skipped: neither systemd (it starts no
    second copy of a running service) nor the daemon (one job at a time) starts it, and it was not missed."""
    when = session.policy.schedule.jobs().get(job)
    record = runs.read(session.state_dir, job)
    ended = record.last_ended() if record else None
    started = record.ended_run_started() if record else None
    if when is None or record is None or ended is None or started is None:
        return
    due = next_run(when, started)
    after = next_run(when, due) if due is not None else None
    counted = record.last_skip is not None and datetime.fromisoformat(record.last_skip.at) >= due if due else True
    # Not when this run is that slot's own (it waited for the lock), nor when its skip was counted already.
    if due is None or due >= ended or after is None or after > _PROCESS_STARTED or counted:
        return
    runs.skipped(session.state_dir, job, due.isoformat(), f"the {job} run that started {local_iso(started)} was "
                                                           "still going when this one was due")


def _backup(session: Session, _request: None) -> Outcome:
    return backup.BACKUP.body(session, None)


def _prune(session: Session, _request: None) -> Outcome:
    return prune.PRUNE.body(session, prune.PruneRequest())


def _drill(session: Session, _request: None) -> Outcome:
    return drill.DRILL.body(session, drill.DrillRequest())


def _standby(session: Session, _request: None) -> Outcome:
    return standby.STANDBY_REFRESH.body(session, standby.StandbyRequest())


def _check(session: Session, _request: None) -> Outcome:
    """Each target reads its next part of the data; a target whose check failed reads the same part again."""
    subset = session.policy.verification.read_data_subset
    cycle = check_parts(subset)
    if cycle is None:  # a size: restic reads that much of randomly chosen packs, there are no turns
        return check.CHECK.body(session, check.CheckRequest(read_data_subset=subset))
    turn = rotation.read(session.state_dir)
    parts = tuple((t.name, f"{turn.check_part(t.name, cycle)}/{cycle}") for t in session.policy.targets)
    outcome = check.CHECK.body(session, check.CheckRequest(per_target=parts))
    for result in outcome.target_results():
        if result.ok:
            turn = turn.after_check(result.target, cycle)
    rotation.write(session.state_dir, turn)
    return outcome


def _verify(session: Session, _request: None) -> Outcome:
    """The next target and database in turn; the turn moves on even when this one fails, so one dead
    target never keeps the others unverified."""
    turns = rotation.verify_turns(session.policy)
    turn = rotation.read(session.state_dir)
    index = turn.verify_next % len(turns)
    rotation.write(session.state_dir, replace(turn, verify_next=(index + 1) % len(turns)))
    target, database = turns[index]
    return verify.VERIFY.body(session, verify.VerifyRequest(target=target, database=database))


_JOBS: dict[str, tuple[Command[Any], Callable[[Session, None], Outcome]]] = {
    "backup": (backup.BACKUP, _backup),
    "prune": (prune.PRUNE, _prune),
    "check": (check.CHECK, _check),
    "verify": (verify.VERIFY, _verify),
    "drill": (drill.DRILL, _drill),
    "standby": (standby.STANDBY_REFRESH, _standby),
}
_DEFAULT_REQUESTS: dict[str, object] = {"verify": verify.VerifyRequest(), "drill": drill.DrillRequest(),
                                        "standby": standby.StandbyRequest()}
