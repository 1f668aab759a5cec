"""opsctl audit verify / show: check the trail's hash chain (and a target's copy of it), read its entries.

With --file, both work on a copy of a trail with no policy, no secret and no state folder: an
auditor's own machine. Comparing with a target needs the policy, to reach that target.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from opsctl import audit
from opsctl.actions.audit_copies import held_links, other_chains
from opsctl.actions.context import App, Session
from opsctl.actions.outcome import AuditFacts, Outcome
from opsctl.actions.runner import Command
from opsctl.audit import chain, offsite
from opsctl.audit.chain import ChainCheck
from opsctl.audit.offsite import Comparison
from opsctl.errors import BadInput, ExitCode, OpsctlError
from opsctl.policy.durations import parse_duration
from opsctl.reports import audit_view
from opsctl.targets.errors import HostileTarget


@dataclass(frozen=True)
class AuditVerifyRequest:
    trail_file: Path | None = None
    target: str | None = None


@dataclass(frozen=True)
class AuditShowRequest:
    since: str | None = None
    command: str | None = None
    trail_file: Path | None = None


@dataclass(frozen=True)
class ChainVerified(Outcome):
    """Whether the trail's chain holds, and whether a target's copy agrees with it."""

    check: ChainCheck
    against: str | None = None
    comparison: Comparison | None = None

    @property
    def exit_code(self) -> ExitCode:
        agrees = self.comparison is None or self.comparison.agrees
        return ExitCode.OK if self.check.intact and agrees else ExitCode.FAILURE

    def to_json(self) -> dict[str, Any]:
        compared = None if self.comparison is None else {
            "target": self.against, "agrees": self.comparison.agrees, "message": self.comparison.message,
            "diverges_at_entry": self.comparison.diverges_at, "not_yet_copied": self.comparison.pending}
        return {"file": str(self.check.path), "intact": self.check.intact, "problem": self.check.problem,
                "bad_line": self.check.bad_line, "entries": len(self.check.links) - 1 if self.check.links else 0,
                "chain": self.check.chain_id, "notes": list(self.check.notes), "against": compared}

    def audit(self) -> AuditFacts:
        problems = [p for p in (self.check.problem, self.comparison and not self.comparison.agrees
                                and self.comparison.message) if p]
        return AuditFacts(targets=(self.against,) if self.against else (), error="; ".join(problems) or None,
                          details={"intact": self.check.intact, "chain": self.check.chain_id})

    def show(self, app: App) -> None:
        audit_view.show_chain_check(app, self.check, self.comparison)


def _verify(session: Session, request: AuditVerifyRequest) -> ChainVerified:
    trail = request.trail_file or audit.trail_path(session.state_dir)
    checked = _checked(trail, head_required=request.trail_file is None)
    if request.target is None:
        return ChainVerified(checked)
    config = session.target_configs(request.target)[0]
    if checked.chain_id is None:
        return ChainVerified(checked, config.name, Comparison(False, f"{trail} has no chain to compare with the copy "
                                                                     f"on {config.name}"))
    return ChainVerified(checked, config.name, _compare(session, config, checked))


def _compare(session: Session, config: Any, checked: ChainCheck) -> Comparison:
    target = session.target(config)
    try:
        with target.files() as files:
            others = other_chains(files, checked.chain_id or "", session.policy.name)
            held = held_links(files, checked.chain_id or "")
    except offsite.DamagedCopy as exc:
        return Comparison(False, f"{target.display} holds a damaged copy of the trail ({exc}): someone wrote there; "
                                 "keep the file as evidence")
    except HostileTarget as exc:  # e.g. a copy written again on the bucket: its first version is the evidence
        return Comparison(False, f"{exc.message}; keep what the target holds as evidence")
    except OpsctlError:
        raise
    except OSError as exc:
        raise BadInput(f"could not read the trail's copy on {target.display} ({exc.strerror or exc})",
                       "check the target answers: opsctl doctor") from None
    return offsite.compare(checked.links, held, target.display, others)


def _verify_file(request: AuditVerifyRequest) -> ChainVerified:
    assert request.trail_file is not None  # noqa: S101 - the CLI picks this command only with --file
    return ChainVerified(_checked(request.trail_file))


def _checked(trail: Path, head_required: bool = False) -> ChainCheck:
    if trail.exists() and not trail.is_file():  # a FIFO or a device would never end
        raise BadInput(f"{trail} is not a regular file", "give the path of an audit trail (audit.jsonl)")
    try:
        return chain.check(trail, head_required)
    except FileNotFoundError:
        raise BadInput(f"there is no audit trail at {trail}", "no command has run with this policy yet, or give "
                                                              "the path of a trail with --file") from None
    except OSError as exc:
        raise BadInput(f"cannot read the audit trail {trail} ({exc.strerror or exc.__class__.__name__})",
                       "run it as the user that runs the backups (the trail is private to it), or check a copy "
                       "with --file") from None


@dataclass(frozen=True)
class TrailShown(Outcome):
    entries: tuple[audit.AuditEntry, ...]
    check: ChainCheck | None

    def to_json(self) -> dict[str, Any]:
        return {"entries": [e.to_json() for e in self.entries],
                "chain_intact": None if self.check is None else self.check.intact,
                "chain_problem": None if self.check is None else self.check.problem}

    def audit(self) -> AuditFacts:
        return AuditFacts(details={"shown": len(self.entries)})

    def show(self, app: App) -> None:
        audit_view.show_entries(app, self.entries, self.check)


def _show(session: Session, request: AuditShowRequest) -> TrailShown:
    return _shown(request.trail_file or audit.trail_path(session.state_dir), request)


def _show_file(request: AuditShowRequest) -> TrailShown:
    assert request.trail_file is not None  # noqa: S101 - the CLI picks this command only with --file
    return _shown(request.trail_file, request)


def _shown(trail: Path, request: AuditShowRequest) -> TrailShown:
    since = _since(request.since)
    checked = _checked(trail)
    entries = [e for e in audit.read(trail)  # every readable entry, also past a break in the chain
               if (request.command is None or e.command == request.command) and _after(e.time, since)]
    return TrailShown(tuple(entries), checked)


def _since(text: str | None) -> datetime | None:
    """--since: a date, a date and time (UTC unless it says), or how long ago (7d)."""
    if text is None:
        return None
    try:
        return datetime.now(UTC) - parse_duration(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise BadInput(f"--since {text!r} is neither a date nor a duration",
                       "give a date (2026-11-30), a date and time (2026-11-30T06:00) or a duration (7d, 12h)") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _after(time: str, since: datetime | None) -> bool:
    if since is None:
        return True
    try:
        when = datetime.fromisoformat(time)
    except ValueError:
        return False
    return (when if when.tzinfo else when.replace(tzinfo=UTC)) >= since


AUDIT_VERIFY = Command("audit verify", _verify)
AUDIT_VERIFY_FILE = Command("audit verify", _verify, standalone=_verify_file)
AUDIT_SHOW = Command("audit show", _show)
AUDIT_SHOW_FILE = Command("audit show", _show, standalone=_show_file)
