"""Prometheus textfile metrics as a runner subscriber: rewritten after every command of a policy that asks.

The rules are evaluated from the run record (as `status --offline` does), so the file follows
every backup, verify or drill without asking the targets; after `opsctl status` it carries that
run's own verdicts.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from opsctl.actions.events import Run
from opsctl.actions.outcome import Outcome, Problem
from opsctl.audit import runs
from opsctl.compliance.picture import picture
from opsctl.compliance.rules import RuleVerdict, evaluate
from opsctl.durable import replace_synced
from opsctl.policy.model import Policy


class MetricsFile:
    """Subscriber: writes the policy's metrics.textfile when a run ends (any ending)."""

    def started(self, run: Run) -> None:
        pass

    def finished(self, run: Run, outcome: Outcome) -> None:
        self._write(run, outcome.compliance())

    def failed(self, run: Run, problem: Problem, word: str) -> None:  # noqa: ARG002 - the record has the ending
        self._write(run, None)

    @staticmethod
    def _write(run: Run, verdicts: tuple[RuleVerdict, ...] | None) -> None:
        policy = run.settings
        if policy is not None and policy.metrics.textfile is not None:
            write_metrics(policy, run.state_dir, policy.metrics.textfile, verdicts)


def write_metrics(policy: Policy, state_dir: Path, path: Path, verdicts: tuple[RuleVerdict, ...] | None) -> None:
    """The textfile, replaced atomically (node_exporter never reads half of it); readable by node_exporter."""
    from opsctl.compliance import metrics

    seen = picture(policy, state_dir, datetime.now(UTC), None)
    text = metrics.render(seen, runs.read_all(state_dir), verdicts if verdicts is not None else evaluate(seen))
    replace_synced(path, text, mode=0o644)  # times, verdicts and names only: nothing secret
