"""Prometheus textfile metrics as a runner subscriber: rewritten after every command of a policy that asks.

The rules are evaluated from the run record (as `status --offline` does), so the file follows
every backup, verify or drill without asking the targets; after `opsctl status` it carries that
run's own verdicts. Writing it never changes how a command ends: a failure is a warning.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

from opsctl.actions.events import Run
from opsctl.actions.outcome import Outcome, Problem
from opsctl.audit import runs
from opsctl.compliance.picture import Picture, picture
from opsctl.compliance.rules import RuleVerdict, evaluate
from opsctl.durable import ForeignFile, replace_own

log = logging.getLogger(__name__)


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
        if policy is None or policy.metrics.textfile is None:
            return
        seen = picture(policy, run.state_dir, datetime.now(UTC), None)
        problem = write_metrics(policy.metrics.textfile, seen, run.state_dir, verdicts or evaluate(seen))
        if problem is not None:
            log.warning("%s", problem)


def write_metrics(path: Path, seen: Picture, state_dir: Path, verdicts: tuple[RuleVerdict, ...]) -> str | None:
    """The textfile, replaced atomically (node_exporter never reads half of it); why it could not be, or None."""
    from opsctl.compliance import metrics  # prometheus_client: loaded only by policies that ask

    text = metrics.render(seen, runs.read_all(state_dir), verdicts)
    try:
        replace_own(path, text, 0o644, is_metrics)  # times, verdicts and names only: nothing secret
    except ForeignFile:
        return (f"the metrics file {path} was not written: a file there holds something else (not opsctl's "
                "metrics); move it away or name another file")
    except OSError as exc:
        return f"the metrics file {path} could not be written ({exc.strerror or exc.__class__.__name__})"
    return None


def is_metrics(start: bytes) -> bool:
    """An empty file, or metrics opsctl wrote: the only files it replaces."""
    return not start.strip() or start.startswith(b"# HELP opsctl_")
