"""This host's status in the fleet folder of each target the policy names (fleet.publish_to), after each job.

The document is exactly `opsctl status --offline --json`'s (from the run record: no target asked, no
password), in an envelope naming the host and the time; it holds names, times and verdicts, never a row
or a secret. Publishing is best-effort: it never changes how a job ends, and it holds the job's end (and
the stop signals the runner holds meanwhile) for at most DEADLINE_S, or the policy's stall_timeout when
that is shorter. A target that cannot be written in time is a warning; the next job writes the whole
document again.
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from opsctl.actions.early import AfterJob
from opsctl.actions.events import Run
from opsctl.policy.model import Policy
from opsctl.policy.model import Target as TargetConfig
from opsctl.targets import target_for

if TYPE_CHECKING:
    from opsctl.targets.fleet import FleetFiles

log = logging.getLogger(__name__)
DEADLINE_S = 30.0  # well below systemd's 90 s from SIGTERM to SIGKILL (the runner holds stop signals meanwhile)


class FleetPublish(AfterJob["FleetFiles"]):
    """Subscriber: after a job, each fleet.publish_to target it reached gets this host's status (early.py says how),
    within the deadline above."""

    name = "fleet"

    def _targets(self, policy: Policy) -> list[TargetConfig]:
        return [c for c in policy.targets if c.name in policy.fleet.publish_to]

    def _open(self, policy: Policy, config: TargetConfig) -> AbstractContextManager[FleetFiles]:
        # Each request gives up within the deadline: a NAS that hangs then ends the writing on its own.
        return target_for(config, publishing_deadline_s(policy)).fleet()

    def _after(self, run: Run, policy: Policy, configs: list[TargetConfig]) -> None:
        content = document(policy, run)
        host = policy.fleet.host_name()
        errors = self.each(policy, configs, lambda files: files.publish(policy.name, host, content),
                           publishing_deadline_s(policy))
        for name, error in errors.items():
            log.warning("this host's status was not published to the fleet folder of %s (%s); the next job "
                        "publishes it again", name, error)


def publishing_deadline_s(policy: Policy) -> float:
    """How long publishing may hold a job's end: DEADLINE_S, or the policy's stall_timeout when shorter."""
    return min(DEADLINE_S, policy.stall_timeout.total_seconds())


def document(policy: Policy, run: Run) -> bytes:
    """What this host publishes now: its offline status, from the run record the job has just written."""
    # Loaded here: every command's runner has this subscriber, and most policies publish nothing.
    from opsctl.actions.status_document import evaluated
    from opsctl.compliance.fleet import encode, envelope

    now = datetime.now(UTC)
    status = evaluated(policy, run.state_dir, now, None).content
    return encode(envelope(policy.fleet.host_name(), policy.name, status, now))
