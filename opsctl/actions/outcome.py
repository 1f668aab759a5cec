"""What every command returns: a typed outcome, with one shape for "this target did this, or failed so".

The CLI renders an outcome as text or as one JSON document; the runner's subscribers (audit
trail, run record) read the same object. Nothing here knows which command produced it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum, IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from opsctl.audit.runs import Fact
from opsctl.errors import BadInput, ExitCode, JobSkipped, OpsctlError, PolicyBusy, PolicyInvalid
from opsctl.reports.console import show_error

if TYPE_CHECKING:
    from opsctl.actions.context import App
    from opsctl.compliance.rules import RuleVerdict

V = TypeVar("V")
@dataclass(frozen=True)
class Problem:
    """Why something failed, for a person: the message, what to do, and the exit code it stands for."""

    message: str
    hint: str | None = None
    exit_code: ExitCode = ExitCode.FAILURE
    problems: tuple[str, ...] = ()

    @classmethod
    def of(cls, error: OpsctlError) -> Problem:
        listed = tuple(error.problems) if isinstance(error, PolicyInvalid) else ()
        return cls(error.message, error.hint, ExitCode(error.exit_code), listed)

    @property
    def word(self) -> str:
        return outcome_word(self.exit_code)


@dataclass(frozen=True)
class TargetResult(Generic[V]):
    """One target's part of a command: its value, or the problem that stopped it there (the others go on)."""

    target: str
    location: str
    value: V | None = None
    problem: Problem | None = None
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.problem is None

    @property
    def error(self) -> str | None:
        return None if self.problem is None else self.problem.message

    @property
    def hint(self) -> str | None:
        return None if self.problem is None else self.problem.hint

    def summary(self) -> dict[str, Any]:
        """Which target, whether it worked, and why not: the fields every command's JSON has per target."""
        return {"target": self.target, "location": self.location, "ok": self.ok,
                "duration_s": round(self.duration_s, 3), "error": self.error, "hint": self.hint}

    def to_json(self) -> dict[str, Any]:
        value = plain(self.value) if self.value is not None else {}
        return {**self.summary(), **(value if isinstance(value, dict) else {"value": value})}


class Role(IntEnum):
    """What a target was in a backup; a higher role wins when one target plays several."""

    NONE = 0
    REPLICA = 1
    SEPARATE = 2
    PRIMARY = 3

    @property
    def label(self) -> str:
        return "-" if self is Role.NONE else self.name.lower()


@dataclass(frozen=True)
class AuditFacts:
    """What an outcome adds to its audit line."""

    targets: tuple[str, ...] = ()
    snapshot_ids: tuple[str, ...] = ()
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


class Outcome:
    """Base of every command's outcome: an exit code, a JSON document, a text view, and audit facts."""

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.OK

    @property
    def word(self) -> str:
        """How it ended, in the audit trail's words: ok, partial, failed, refused, busy, interrupted."""
        return outcome_word(self.exit_code)

    def to_json(self) -> dict[str, Any]:
        return fields_of(self)

    def show(self, app: App) -> None:
        raise NotImplementedError

    def target_results(self) -> Sequence[TargetResult[Any]]:
        return ()

    def target_facts(self) -> dict[str, dict[str, Fact]]:
        """What this run learnt about each target (by name), for the run record; earlier facts it does not
        restate are kept there."""
        return {}

    def compliance(self) -> tuple[RuleVerdict, ...] | None:
        """The rules' verdicts, for an outcome that evaluated them (status)."""
        return None

    def audit(self) -> AuditFacts:
        results = self.target_results()
        errors = [f"{r.location}: {r.error}" for r in results if r.error]
        return AuditFacts(targets=tuple(r.location for r in results), error="; ".join(errors) or None)


@dataclass(frozen=True)
class PerTarget(Outcome, Generic[V]):
    """An outcome made of one result per target: 0 when all worked, 1 when none did, 3 in between."""

    targets: tuple[TargetResult[V], ...]

    @property
    def exit_code(self) -> ExitCode:
        return exit_code_for(self.targets)

    def target_results(self) -> tuple[TargetResult[V], ...]:
        return self.targets


@dataclass(frozen=True)
class Refused(Outcome):
    """A command that stopped before or while doing its work, with the reason and what to do."""

    problem: Problem
    ending: str = "failed"

    @property
    def exit_code(self) -> ExitCode:
        return self.problem.exit_code

    @property
    def word(self) -> str:
        return self.ending

    def to_json(self) -> dict[str, Any]:
        return {"error": self.problem.message, "hint": self.problem.hint, "problems": list(self.problem.problems)}

    def show(self, app: App) -> None:
        show_error(app, self.problem.message, self.problem.hint, self.problem.problems)

    def audit(self) -> AuditFacts:
        return AuditFacts(error=self.problem.message)


def failure_word(error: BaseException) -> str:
    """The audit trail's word for how a command stopped."""
    if isinstance(error, KeyboardInterrupt):
        return "interrupted"
    if isinstance(error, JobSkipped):
        return "skipped"
    if isinstance(error, PolicyBusy):
        return "busy"
    if isinstance(error, BadInput):
        return "refused"
    return "failed"


def outcome_word(code: ExitCode) -> str:
    """The audit trail's word for an exit code."""
    return {ExitCode.OK: "ok", ExitCode.PARTIAL: "partial", ExitCode.BAD_INPUT: "refused",
            ExitCode.INTERRUPTED: "interrupted", ExitCode.SKIPPED: "skipped"}.get(code, "failed")


def exit_code_for(results: Sequence[TargetResult[Any]]) -> ExitCode:
    """0 when every target worked, 1 when none did, 3 when some did."""
    failures = sum(not r.ok for r in results)
    if failures == 0:
        return ExitCode.OK
    return ExitCode.PARTIAL if failures < len(results) else ExitCode.FAILURE


def plain(value: Any) -> Any:
    """A value as JSON types: dataclasses by their fields (or their own to_json), times in ISO 8601."""
    if hasattr(value, "to_json") and callable(value.to_json) and not isinstance(value, type):
        return value.to_json()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return fields_of(value)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    return _plain_scalar(value)


def _plain_scalar(value: Any) -> Any:
    """A single value as a JSON type: roles by their label, enums by their value, times in ISO 8601, paths as text."""
    if isinstance(value, Role):
        return value.label
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    return value


def fields_of(value: Any) -> dict[str, Any]:
    """A dataclass's fields as JSON types (each field through plain)."""
    return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
