"""What the runner tells its subscribers: a run started, then finished with an Outcome or failed.

The audit trail, the run record and notifications are subscribers; a feature that must see
every run adds one here instead of wrapping commands.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from opsctl.actions.outcome import Outcome, Problem
from opsctl.policy.model import Policy


@dataclass(frozen=True)
class Run:
    """One run of a command, as subscribers see it."""

    command: str
    started_at: str
    clock: float
    state_dir: Path
    policy: str | None = None
    policy_file: str | None = None
    targets: tuple[str, ...] = ()  # what a run that stopped was working on
    snapshot_ids: tuple[str, ...] = ()
    settings: Policy | None = None  # the loaded policy (None when it could not be loaded)
    scheduled: bool = False  # started by a timer or `schedule run`, not by a person

    @property
    def duration_s(self) -> float:
        return round(time.monotonic() - self.clock, 3)


class Subscriber(Protocol):
    def started(self, run: Run) -> None: ...

    def finished(self, run: Run, outcome: Outcome) -> None: ...

    def failed(self, run: Run, problem: Problem, word: str) -> None: ...
