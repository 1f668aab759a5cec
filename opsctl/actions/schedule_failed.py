"""opsctl schedule failed JOB: what systemd's OnFailure= (and `schedule run`) start when a job's process ended badly.

A run that ends on its own has already recorded and notified its outcome; this adds nothing then,
so a failed backup pages once. A run that was killed (kill -9, the OOM killer, a stop timeout)
left its `running` mark in the run record and told nobody: this records it as killed and sends the
failure it could not send, with the exit status systemd saw.
"""

from __future__ import annotations

import os
import signal
import socket
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from opsctl.actions.context import App, Session
from opsctl.actions.notifications import send
from opsctl.actions.outcome import AuditFacts, Outcome
from opsctl.actions.runner import Command
from opsctl.audit import runs
from opsctl.notify.event import Event
from opsctl.reports import console


@dataclass(frozen=True)
class FailureReported(Outcome):
    job: str
    killed: bool
    how: str = ""

    def show(self, app: App) -> None:
        if self.killed:
            console.verdict_line(app, False, self.job, f"the run ended without reporting ({self.how}); recorded and "
                                                        "notified", KILLED_HINT)
        else:
            app.out.print(f"{self.job}: the run reported its own ending; nothing more to send")

    def audit(self) -> AuditFacts:
        return AuditFacts(details={"job": self.job, "killed": self.killed, "how": self.how})


KILLED_HINT = ("look at the job's log (journalctl -u the job's service) for why it stopped: memory (the OOM killer), "
               "a stop timeout, or a kill; what it left behind is cleaned up by the next run")


def _failed(session: Session, job: str) -> FailureReported:
    mark = runs.ended_unreported(session.state_dir, job)
    if mark is None:
        return FailureReported(job, killed=False)
    code, how = monitor_result()
    now = datetime.now(UTC)
    started = datetime.fromisoformat(mark.started_at)
    error = f"the {job} run ended without reporting: {how}"
    runs.killed(session.state_dir, mark, runs.CommandRun(
        job, "killed", code, now.isoformat(timespec="seconds"), round((now - started).total_seconds(), 3), error))
    event = Event("failure", job, session.policy.name, socket.gethostname(), str(uuid.uuid4()), mark.started_at,
                  exit_code=code, outcome="killed", error=error, hint=KILLED_HINT)
    send(session.policy.notify, event)
    return FailureReported(job, killed=True, how=how)


def monitor_result() -> tuple[int, str]:
    """The failed run's exit code and how it ended, from systemd's MONITOR_* variables (systemd 251+)."""
    kind = os.environ.get("MONITOR_EXIT_CODE", "")
    status = os.environ.get("MONITOR_EXIT_STATUS", "")
    if kind in ("killed", "dumped"):
        number = _signal_number(status)
        return (128 + number if number else 1), f"killed by signal {status or 'unknown'}"
    if kind == "exited" and status.isdigit():
        return int(status) or 1, f"exited with status {status}"
    result = os.environ.get("MONITOR_SERVICE_RESULT")
    return 1, f"ended badly ({result})" if result else "killed or crashed"


def _signal_number(name: str) -> int | None:
    if name.isdigit():
        return int(name)
    try:
        return int(signal.Signals[name if name.startswith("SIG") else f"SIG{name}"])
    except KeyError:
        return None


SCHEDULE_FAILED = Command("schedule failed", _failed)
