"""opsctl fleet status: every host that publishes its status beside one target's repository, in one table.

It reads `fleet/<policy>/<host>.json` beside the repository of the target named (the policy given only
says where that is, and with which keys: read-only ones do, `opsctl iam-policy --role fleet`). No
repository password, no restic, no write to the target, and nothing recorded as this policy's outcome:
another host failing is no failure of this one. The folder may be hostile: targets/fleet.py says what
is read there, compliance/fleet_documents.py what is believed of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.markup import escape

from opsctl import __version__
from opsctl.actions.answer_files import DEFAULT_TIMEOUT_S, check_output_file, write_own
from opsctl.actions.context import App, Session, as_operator_error
from opsctl.actions.fleet_reading import read_fleet
from opsctl.actions.outcome import AuditFacts, Outcome
from opsctl.actions.runner import Command
from opsctl.compliance.fleet import HostStatus, fleet_verdict
from opsctl.compliance.fleet_documents import assess, unreadable
from opsctl.compliance.rules import FAIL, PASS, UNKNOWN, Status
from opsctl.errors import ExitCode, OpsctlError
from opsctl.policy.fleet import refuse_fleet_repository
from opsctl.reports import fleet_view, sealed
from opsctl.targets import Access
from opsctl.targets.fleet import Listing

_NAMED = 10  # hosts the summary names; the rest are counted


@dataclass(frozen=True)
class FleetRequest:
    target: str
    timeout_s: float | None = None  # None: DEFAULT_TIMEOUT_S
    html: Path | None = None


@dataclass(frozen=True)
class FleetAnswer(Outcome):
    """Every host found, the fleet's verdict over them, and the page written with it."""

    target: str
    location: str
    checked_at: datetime
    hosts: tuple[HostStatus, ...] = ()
    listing: Listing = field(default_factory=Listing)
    error: str | None = None  # the folder itself could not be read
    hint: str | None = None
    files: tuple[Path, ...] = ()
    warnings: tuple[str, ...] = field(default=())

    @property
    def verdict(self) -> Status:
        return fleet_verdict(list(self.hosts), bool(self.listing.cut)) if self.error is None else UNKNOWN

    @property
    def exit_code(self) -> ExitCode:
        """0 every host passes and is fresh, 1 one fails or is stale, 3 one is unknown or unreadable, the listing was
        cut, or no host published."""
        return {PASS: ExitCode.OK, FAIL: ExitCode.FAILURE}.get(self.verdict, ExitCode.PARTIAL)

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "location": self.location, "verdict": self.verdict,
                "summary": self.summary(), "checked_at": self.checked_at.isoformat(timespec="seconds"),
                "hosts": [h.to_json() for h in self.hosts], "ignored": self.listing.ignored,
                "interrupted": self.listing.interrupted, "cut": list(self.listing.cut), "error": self.error,
                "hint": self.hint, "files": [str(p) for p in self.files], "warnings": list(self.warnings)}

    def summary(self) -> str:
        """One sentence: how many hosts, which need someone (the first few by name), and whether some may be
        missing."""
        if self.error is not None:
            return "the fleet folder could not be read, so no host's status is known"
        cut = (f"; the fleet folder holds more than opsctl reads ({', '.join(self.listing.cut)} only in part), so "
               "some hosts may be missing" if self.listing.cut else "")
        if not self.hosts:
            return (f"no host has published its status here yet (policies with fleet.publish_to: [{self.target}] "
                    f"publish after each job){cut}")
        troubled = [h for h in self.hosts if h.status != PASS]
        count = f"{len(self.hosts)} host{'' if len(self.hosts) == 1 else 's'}"
        if not troubled:
            return f"{count}, each protected as its policy requires and published within its RPO{cut}"
        named = ", ".join(f"{h.host} {h.state}" for h in troubled[:_NAMED])
        more = f" and {len(troubled) - _NAMED} more" if len(troubled) > _NAMED else ""
        return f"{len(troubled)} of {count} need attention: {named}{more}{cut}"

    def audit(self) -> AuditFacts:
        troubled = [f"{h.host} ({h.policy}) {h.state}" for h in self.hosts if h.status != PASS]
        shown = "; ".join(troubled[:_NAMED]) + (f"; and {len(troubled) - _NAMED} more" if len(troubled) > _NAMED
                                                 else "")
        return AuditFacts(targets=(self.location,), error=self.error or shown or None,
                          details={"verdict": self.verdict, "hosts": len(self.hosts), "cut": bool(self.listing.cut)})

    def show(self, app: App) -> None:
        fleet_view.show_fleet(app, self.to_json())
        for warning in self.warnings:
            app.err.print(f"warning: {escape(fleet_view.shown(warning))}")


def _fleet_status(session: Session, request: FleetRequest) -> FleetAnswer:
    config = session.target_configs(request.target)[0]
    refuse_fleet_repository(config)
    target = session.target_to_read(config)
    now = datetime.now(UTC)
    answer = FleetAnswer(config.name, target.display, now)
    try:
        found = read_fleet(target, request.timeout_s or DEFAULT_TIMEOUT_S,
                           lambda: session.app.checkpoints.reached("fleet-document-read"))
    except OpsctlError as exc:
        return _with_page(replace(answer, error=exc.message, hint=exc.hint), request)
    except Exception as exc:  # noqa: BLE001 - a client library's own error (paramiko, boto3): this target's answer
        failure = as_operator_error(exc, target.display)
        return _with_page(replace(answer, error=failure.message, hint=failure.hint), request)
    hosts = tuple(_assessed(key, data, now) for key, data in found.documents.items())
    return _with_page(replace(answer, location=found.location, hosts=hosts, listing=found.listing), request)


def _assessed(key: tuple[str, str], data: bytes | OpsctlError, now: datetime) -> HostStatus:
    policy, host = key
    if isinstance(data, OpsctlError):
        return unreadable(policy, host, now, data.message, data.hint)
    return assess(policy, host, data, now)


def _with_page(answer: FleetAnswer, request: FleetRequest) -> FleetAnswer:
    """The auditor's page, when asked; one that cannot be written is a warning, and the verdict stands."""
    if request.html is None:
        return answer
    made = {"user": sealed.user(), "host": sealed.host(), "opsctl_version": __version__}
    page = fleet_view.render_html(answer.to_json(), made)
    problem = write_own(request.html, page.encode(), _is_page)
    if problem is not None:
        return replace(answer, warnings=(*answer.warnings, problem))
    return replace(answer, files=(*answer.files, request.html))


def _is_page(start: bytes) -> bool:
    """An empty file, or a fleet page opsctl wrote: the only files --html replaces."""
    return not start.strip() or f'<meta name="generator" content="{fleet_view.GENERATOR}">'.encode() in start


def _precheck(_: App, request: FleetRequest) -> None:
    if request.html is not None:
        check_output_file("--html", request.html, (".html", ".htm"), _is_page)


# Reads one target's fleet folder and nothing else: no lock, no restic, no password (the policy is loaded as a
# reader's, and only the named target's keys are checked: Session.target_to_read). An auditor's machine with the
# fleet keys alone runs it; on another user's policy it records nothing (Session.visiting).
FLEET_STATUS = Command("fleet status", _fleet_status, precheck=_precheck, access=Access.READ, about_others=True)
