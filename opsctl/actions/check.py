"""opsctl check: restic check on every target at once, a verdict per target."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from opsctl.actions.context import App, Session, as_operator_error
from opsctl.actions.outcome import AuditFacts, PerTarget, Problem, TargetResult
from opsctl.actions.runner import Command, Secrets
from opsctl.audit.runs import Fact
from opsctl.policy.model import Target as TargetConfig
from opsctl.reports import console


@dataclass(frozen=True)
class CheckRequest:
    read_data_subset: str | None = None
    target: str | None = None
    per_target: tuple[tuple[str, str], ...] = ()  # a scheduled check: each target's own part, e.g. ("nas", "3/20")


@dataclass(frozen=True)
class Sound:
    """A repository restic check found no error in."""

    summary: str
    read_data_subset: str | None


@dataclass(frozen=True)
class Checked(PerTarget[Sound]):
    def to_json(self) -> dict[str, Any]:
        return {"targets": [{**r.to_json(), "summary": r.value.summary if r.value else r.error} for r in self.targets]}

    def audit(self) -> AuditFacts:
        return AuditFacts(targets=tuple(r.location for r in self.targets),
                          details={r.target: "ok" if r.ok else r.error for r in self.targets})

    def target_facts(self) -> dict[str, dict[str, Fact]]:
        """How much of each sound repository's data this check read back; whether it found damage (a target it
        could not reach is not damaged)."""
        return {r.target: {"read_data_subset": r.value.read_data_subset if r.value else None,
                           "damaged": r.hint == DAMAGED_HINT} for r in self.targets}

    def show(self, app: App) -> None:
        show_check(app, self)


def _check(session: Session, request: CheckRequest) -> Checked:
    return Checked(tuple(session.on_each_target(request.target, lambda c: _check_one(session, c, request))))


def _check_one(session: Session, config: TargetConfig, request: CheckRequest) -> TargetResult[Sound]:
    started, location = time.monotonic(), config.name
    subset = dict(request.per_target).get(config.name, request.read_data_subset)
    try:
        target = session.target(config)
        location = target.display
        target.probe()
        result = session.restic.check(session.repository(target), subset)
    except Exception as exc:  # noqa: BLE001 - one target's failure is its row, the others go on
        return TargetResult(config.name, location, problem=Problem.of(as_operator_error(exc, location)),
                            duration_s=time.monotonic() - started)
    if not result.ok:
        return TargetResult(config.name, location, duration_s=time.monotonic() - started,
                            problem=Problem(f"the repository is damaged: {first_error(result.report)}", DAMAGED_HINT))
    scope = f"structure and {subset} of the data read back" if subset else "structure"
    return TargetResult(config.name, location, Sound(f"no errors ({scope})", subset),
                        duration_s=time.monotonic() - started)


def show_check(app: App, checked: Checked) -> None:
    for r in checked.targets:
        console.verdict_line(app, r.ok, r.location, r.value.summary if r.value else r.error, r.hint)


DAMAGED_HINT = ("restore from another target meanwhile and do not prune this one; if it is a replica, remove "
                "the damaged pack file named above from it and the next backup copies a good one")


def first_error(report: str) -> str:
    """The first line of a restic check report that says what is wrong."""
    lines = [line.strip() for line in report.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower() or "does not match" in line.lower()
              or "not found" in line.lower()]
    return (errors or lines or ["restic check failed"])[0][:300]


CHECK = Command("check", _check, lock=True, restic=True, secrets=Secrets.REPOSITORY)
