"""opsctl schedule run: the policy's jobs in the foreground, for hosts and containers without systemd.

The `schedule` library keeps the jobs and runs the due ones; the moments come from the same
OnCalendar expressions the systemd timers use. Each job runs as its own `opsctl schedule job`
process, exactly as a timer starts it, so a crash or a leak in one run never takes the daemon
down, and a failing job is just a logged line. Jobs run one at a time: one that comes due while
another runs starts right after it; a job's own run that comes due while it still runs is
skipped and recorded (never queued). At start, a job whose last run is older than its schedule
allows runs at once (like systemd's Persistent=true). SIGTERM or Ctrl-C stops the running job
the way systemd would (it cleans up after itself), then the daemon.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import schedule

from opsctl import secrets
from opsctl.actions.context import App, Session
from opsctl.actions.outcome import AuditFacts, Outcome, outcome_word
from opsctl.actions.runner import Command
from opsctl.audit import runs
from opsctl.errors import BadInput, ExitCode
from opsctl.policy.calendar import Calendar
from opsctl.policy.schedule import local_iso, next_run

LogFormat = Literal["text", "json"]
STOP_GRACE_S = 120  # as the generated units' TimeoutStopSec: a job gets this long to clean up


@dataclass(frozen=True)
class DaemonRequest:
    log_format: LogFormat = "text"


@dataclass(frozen=True)
class Stopped(Outcome):
    jobs_run: int

    def show(self, app: App) -> None:
        app.err.print(f"schedule run stopped after {self.jobs_run} job runs")

    def audit(self) -> AuditFacts:
        return AuditFacts(details={"jobs_run": self.jobs_run})


class CalendarJob(schedule.Job):
    """A job of the `schedule` library whose moments come from an OnCalendar expression (its own units
    cannot say "the 1st of each month at 06:00"), each pushed back by up to the randomized delay."""

    def __init__(self, name: str, when: Calendar, delay: timedelta, scheduler: schedule.Scheduler) -> None:
        super().__init__(1, scheduler)
        self.name, self.when, self.delay = name, when, delay
        self.unit = "calendar"

    def _schedule_next_run(self) -> None:
        jitter = timedelta(seconds=random.uniform(0, self.delay.total_seconds()))  # noqa: S311 - spread, not secrecy
        due = next_run(self.when, datetime.now(UTC))
        # Never due again: the library keeps naive local times, and datetime.max is "later than anything".
        self.next_run = datetime.max if due is None else _naive_local(due + jitter)  # noqa: DTZ901

    def due_now(self) -> None:
        self.next_run = datetime.now()  # noqa: DTZ005 - the library keeps naive local times

    def __repr__(self) -> str:
        return f"CalendarJob({self.name}, {self.when.normalized})"


def _naive_local(moment: datetime) -> datetime:
    return moment.astimezone().replace(tzinfo=None)


class Daemon:
    """The loop: run what is due, then wait for the next due moment or a stop signal."""

    def __init__(self, session: Session, log_format: LogFormat) -> None:
        self.session, self.log_format = session, log_format
        self.scheduler = schedule.Scheduler()
        self.stopping = threading.Event()
        self.child: subprocess.Popen[bytes] | None = None
        self.jobs_run = 0

    def serve(self) -> int:
        policy = self.session.policy
        for name, when in policy.schedule.jobs().items():
            job = CalendarJob(name, when, policy.schedule.randomized_delay, self.scheduler)
            job.do(self.run_job, job)
            if self._overdue(name, when):
                job.due_now()
        while not self.stopping.is_set():
            self.scheduler.run_pending()
            idle = self.scheduler.idle_seconds
            self.stopping.wait(max(0.05, min(idle if idle is not None else 60.0, 60.0)))
        return self.jobs_run

    def _overdue(self, name: str, when: Calendar) -> bool:
        """Ran before, and a run has come due since (as Persistent=true: a job that never ran waits its turn)."""
        record = runs.read(self.session.state_dir, name)
        last = record.last_started() if record else None
        due = next_run(when, last) if last is not None else None
        return due is not None and due <= datetime.now(UTC)

    def run_job(self, job: CalendarJob) -> None:
        if self.stopping.is_set():
            return
        started = datetime.now(UTC)
        code = self._child(["job", job.name])
        ended = datetime.now(UTC)
        self.jobs_run += 1
        stopped = self.stopping.is_set() and code == ExitCode.INTERRUPTED  # it reported its own interruption
        if code not in (ExitCode.OK, ExitCode.SKIPPED) and not stopped:  # as OnFailure=: what the run could not
            self._child(["failed", job.name], monitor=_monitor(code))
        self._log_line(job, code, started, ended)

    def _child(self, args: list[str], monitor: dict[str, str] | None = None) -> int:
        argv = [sys.executable, "-m", "opsctl", "--policy", str(self.session.policy_path), "schedule", *args]
        # The policy's password variables were taken out of this process's environment: the job reads them itself.
        env = {**os.environ, **secrets.withheld(), **(monitor or {})}
        # The job's own report goes to stderr: stdout carries only the daemon's one line per job.
        self.child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=sys.stderr.fileno(), env=env)
        if self.stopping.is_set():  # the stop came while it was being started: it must not run a whole job
            self.child.send_signal(signal.SIGTERM)
        try:
            return self.child.wait()
        finally:
            self.child = None

    def stop(self) -> None:
        """Stop waiting; a running job is told to stop (it cleans up) and given STOP_GRACE_S to do so."""
        self.stopping.set()
        child = self.child
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)
            threading.Thread(target=_kill_after, args=(child, STOP_GRACE_S), daemon=True).start()

    def _log_line(self, job: CalendarJob, code: int, started: datetime, ended: datetime) -> None:
        outcome = outcome_word(ExitCode(code)) if code in set(ExitCode) else "killed" if code < 0 else "failed"
        line: dict[str, Any] = {
            "job": job.name, "policy": self.session.policy.name, "outcome": outcome, "exit_code": code,
            "started_at": started.isoformat(timespec="seconds"),
            "duration_s": round((ended - started).total_seconds(), 3),
            "next_run": local_iso(next_run(job.when, ended))}
        sys.stdout.write((json.dumps(line) if self.log_format == "json" else _text_line(line)) + "\n")
        sys.stdout.flush()


def _monitor(code: int) -> dict[str, str]:
    """What systemd tells an OnFailure= unit about the run, in its MONITOR_* words."""
    if code < 0:
        return {"MONITOR_EXIT_CODE": "killed", "MONITOR_EXIT_STATUS": signal.Signals(-code).name.removeprefix("SIG")}
    return {"MONITOR_EXIT_CODE": "exited", "MONITOR_EXIT_STATUS": str(code)}


def _text_line(line: dict[str, Any]) -> str:
    return (f"opsctl {line['job']} of policy {line['policy']}: {line['outcome']} (exit {line['exit_code']}) in "
            f"{line['duration_s']:.1f} s; next run {line['next_run']}")


def _kill_after(child: subprocess.Popen[bytes], grace_s: float) -> None:
    try:
        child.wait(grace_s)
    except subprocess.TimeoutExpired:
        child.kill()


@contextmanager
def only_daemon(state_dir: Path) -> Iterator[None]:
    """One `schedule run` per policy: a second would run every job twice."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(state_dir / "daemon.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BadInput("another `opsctl schedule run` is already running this policy's jobs",
                           "stop that one first (or leave it: one is enough)") from None
        yield
    finally:
        os.close(fd)


@contextmanager
def _stop_signals(daemon: Daemon) -> Iterator[None]:
    handler = lambda _signum, _frame: daemon.stop()  # noqa: E731 - a one-line signal handler
    earlier = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in earlier.items():
            signal.signal(s, h)


def _serve(session: Session, request: DaemonRequest) -> Stopped:
    if not session.policy.schedule.jobs():
        raise BadInput("every job is off in the policy's schedule: nothing to run",
                       "set schedule.backup (for example hourly) in the policy")
    daemon = Daemon(session, request.log_format)
    with only_daemon(session.state_dir), _stop_signals(daemon):
        return Stopped(daemon.serve())


SCHEDULE_RUN = Command("schedule run", _serve)
