"""opsctl notify test: send a test event to every channel of the policy and say which ones answered.

healthchecks channels get it on /log, which records it without changing the check's state, so a
test never marks a failing backup as fine.
"""

from __future__ import annotations

import socket
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from opsctl.actions.context import App, Session
from opsctl.actions.notifications import send
from opsctl.actions.outcome import AuditFacts, Outcome
from opsctl.actions.runner import Command
from opsctl.errors import BadInput, ExitCode
from opsctl.notify import Delivery, Event
from opsctl.reports import console


@dataclass(frozen=True)
class Tested(Outcome):
    deliveries: tuple[Delivery, ...]

    @property
    def exit_code(self) -> ExitCode:
        failed = sum(not d.ok for d in self.deliveries)
        if failed == 0:
            return ExitCode.OK
        return ExitCode.FAILURE if failed == len(self.deliveries) else ExitCode.PARTIAL

    def to_json(self) -> dict[str, Any]:
        return {"channels": [{"channel": d.channel, "ok": d.ok, "attempts": d.attempts, "error": d.error,
                              "seconds": round(d.seconds, 3)} for d in self.deliveries]}

    def show(self, app: App) -> None:
        for d in self.deliveries:
            said = f"answered in {d.seconds:.1f} s" if d.ok else f"{d.error} ({d.attempts} attempts)"
            console.verdict_line(app, d.ok, d.channel, said,
                                 "check the URL (or program) and that this host can reach it; see the README, "
                                 "Notifications")

    def audit(self) -> AuditFacts:
        return AuditFacts(details={d.channel: "ok" if d.ok else d.error for d in self.deliveries})


def _test(session: Session, _request: None) -> Tested:
    notify = session.policy.notify
    if not notify.channels:
        raise BadInput("the policy has no notification channels to test",
                       "add notify.channels (healthchecks, webhook or command); see policies/reference.yaml")
    event = Event("test", "test", session.policy.name, socket.gethostname(), str(uuid.uuid4()),
                  datetime.now(UTC).isoformat(timespec="seconds"), outcome="test")
    return Tested(tuple(send(notify, event)))


NOTIFY_TEST = Command("notify test", _test)
