"""opsctl doctor: a preflight of everything a backup needs, each line OK or a problem with what to do."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

from opsctl.actions import history
from opsctl.actions.context import App, Session
from opsctl.actions.outcome import AuditFacts, Outcome, Problem, TargetResult, plain
from opsctl.actions.runner import Command
from opsctl.actions.servers import ServerChoice, sources_on
from opsctl.errors import ExitCode, OpsctlError
from opsctl.policy.durations import human_duration
from opsctl.reports import console, signing
from opsctl.reports.console import human_bytes
from opsctl.sources import Source
from opsctl.sources.errors import traceback_safe
from opsctl.targets import Fact, RepositoryFiles, Target, TargetUnreachable
from opsctl.targets.replicate import check_identity

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class Section:
    """One heading of the preflight and its checks; `target` names the policy target it is about, if any."""

    name: str
    checks: tuple[Fact, ...]
    target: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "checks": plain(self.checks)}


@dataclass(frozen=True)
class Preflight(Outcome):
    sections: tuple[Section, ...]

    @property
    def ok(self) -> bool:
        return all(f.ok for section in self.sections for f in section.checks)

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.OK if self.ok else ExitCode.FAILURE

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "sections": [section.to_json() for section in self.sections]}

    def target_results(self) -> list[TargetResult[None]]:
        """Each target's preflight: its first problem, if it has one."""
        results: list[TargetResult[None]] = []
        for section in self.sections:
            if section.target is not None:
                bad = next((f for f in section.checks if not f.ok), None)
                problem = None if bad is None else Problem(f"{bad.check}: {bad.detail}", bad.hint)
                results.append(TargetResult(section.target, section.name, problem=problem))
        return results

    def audit(self) -> AuditFacts:
        problems = [f"{s.name}: {f.check}: {f.detail}" for s in self.sections for f in s.checks if not f.ok]
        return AuditFacts(targets=tuple(r.location for r in self.target_results()), error="; ".join(problems) or None)

    def show(self, app: App) -> None:
        console.show_doctor(app, [(s.name, list(s.checks)) for s in self.sections])


def _doctor(session: Session, _: None) -> Preflight:
    sections = [Section("opsctl", tuple(_basics(session))), Section("database", tuple(_database(session)))]
    if session.policy.recovery_server is not None:
        sections.append(Section("recovery server", tuple(_recovery_server(session))))
    targets = [session.target(c) for c in session.policy.targets]
    with ThreadPoolExecutor(max_workers=len(targets)) as pool:
        per_target = list(pool.map(lambda t: _target(session, t), targets))
    sections += [Section(t.display, tuple(facts), t.name) for t, facts in zip(targets, per_target, strict=True)]
    sections.append(Section("replicas", tuple(_replicas(targets, per_target) + _retention_order(session))))
    sections.append(Section("recovery", tuple(_recovery(session))))
    sections.append(Section("leftovers of killed runs", tuple(_leftovers(session))))
    return Preflight(tuple(sections))


def _leftovers(session: Session) -> list[Fact]:
    """Scratch copies and secret files a killed run left: removed now (the folders already by the runner)."""
    try:
        session.sweep_databases()
    except OpsctlError as exc:
        return [Fact("scratch databases", False, exc.message, exc.hint)]
    if not session.swept:
        return [Fact("found", True, "none")]
    return [Fact("removed", True, name, "a run was killed (kill -9, out of memory, power loss); see its audit entry")
            for name in session.swept]


def _basics(session: Session) -> list[Fact]:
    def password() -> str:
        session.read_secrets(database=False)
        return f"readable from {session.policy.repository_password.describe()}"

    facts = [_fact("restic", lambda: f"restic {session.restic.version}")]
    facts.append(_fact("repository password", password))
    facts.append(_signing(session))
    return facts


def _signing(session: Session) -> Fact:
    """Which key signs the reports; none is a note (reports still carry their hash), a broken one a problem."""
    try:
        signer = signing.find_signer(session.policy)
    except OpsctlError as exc:
        return Fact("report signing", False, f"{exc.message}, so reports are written unsigned", exc.hint)
    except RuntimeError:  # no home folder to look in (HOME unset, a uid without a passwd entry)
        return Fact("report signing", False, "the default signing key's folder cannot be found",
                    "set signing_key: in the policy, then run: opsctl keys signing init")
    if signer is None:
        return Fact("report signing", True, "reports are not signed", "run: opsctl keys signing init")
    return Fact("report signing", True, f"key {signer.public.key_id} at {signer.path}")


def _database(session: Session) -> list[Fact]:
    try:
        sources = session.sources
    except OpsctlError as exc:
        return [Fact("credentials", False, exc.message, exc.hint)]
    return [_fact(source.database, source.probe) for source in sources]


def _recovery_server(session: Session) -> list[Fact]:
    """The server verify, drill and standby restore to: it answers, and how much room it has (where known)."""
    try:
        sources = sources_on(session, ServerChoice("recovery"))
    except OpsctlError as exc:
        return [Fact("credentials", False, exc.message, exc.hint)]
    facts = [_fact(source.database, source.probe) for source in sources]
    if all(fact.ok for fact in facts):
        facts.append(_fact("free space", lambda: _room(sources[0])))
    return facts


def _room(source: Source) -> str:
    free = source.free_bytes()
    if free is None:
        return "unknown: the server is not on this machine, or does not say where it keeps its data"
    return f"{human_bytes(free)} free where it keeps its data"


def _target(session: Session, target: Target) -> list[Fact]:
    try:
        target.probe()
    except OpsctlError as exc:
        return [Fact("reachable", False, exc.message, exc.hint)]
    facts = [Fact("reachable", True, "yes"), *target.facts()]
    facts.append(_fact("repository", lambda: _opens(session, target)))
    return facts


def _opens(session: Session, target: Target) -> str:
    if not session.restic.exists(session.repository(target)):
        raise TargetUnreachable("no repository here yet", "run: opsctl init")
    return "initialised; opens with the policy's password"


def _replicas(targets: list[Target], per_target: list[list[Fact]]) -> list[Fact]:
    """Which targets share the first healthy repository's identity (and so its key)."""
    healthy = [t for t, facts in zip(targets, per_target, strict=True) if all(f.ok for f in facts)]
    if not healthy[1:]:  # no replica: fewer than two healthy targets
        return []
    origin = healthy[0]
    with origin.files() as source:
        return [_fact(target.name, partial(_identity, source, target, origin.name)) for target in healthy[1:]]


def _retention_order(session: Session) -> list[Fact]:
    """A target that keeps less than the first one gets back, at every backup, what its prune removed."""
    configs = session.policy.targets
    first = session.retention(configs[0])
    facts = []
    for config in configs[1:]:
        rules = session.retention(config)
        if any(rules.get(rule, 0) < count for rule, count in first.items()):
            facts.append(Fact(f"retention of {config.name}", True,
                              f"keeps less than {configs[0].name}, the first target",
                              f"list {config.name} before {configs[0].name}, or give it at least the same keep-rules: "
                              "otherwise each backup copies back data its prune removed"))
    return facts


def _recovery(session: Session) -> list[Fact]:
    """Notes, not blockers: where a drill would restore from, and how the last one went."""
    offsite = [config.name for config in session.policy.targets if config.offsite]
    facts = [Fact("off-site copy", True, ", ".join(offsite), None) if offsite else
             Fact("off-site copy", True, "no target is marked offsite: true",
                  "mark the copy that survives losing the site with offsite: true; opsctl drill restores from it")]
    drills = history.past_drills(session.state_dir)
    if not drills:
        return [*facts, Fact("last drill", True, "none recorded on this machine",
                             "run: opsctl drill (it measures RTO and RPO against the policy's objectives)")]
    last = drills[-1]
    measured = (f"RTO {human_duration(last.rto_s)}, RPO {human_duration(last.rpo_s)}"
                if last.rto_s is not None and last.rpo_s is not None else "restore not proven")
    hint = None if last.verdict == "PASSED" else f"read its report ({last.report}) and act on what it says"
    return [*facts, Fact("last drill", True, f"{last.verdict} on {last.time} from {last.target}: {measured}", hint)]


def _identity(source: RepositoryFiles, target: Target, origin: str) -> str:
    with target.files() as dest:
        check_identity(source, dest, target.display)
    return f"a replica of {origin} (same repository, same key)"


def _fact(check: str, probe: Callable[[], str]) -> Fact:
    try:
        return Fact(check, True, probe())
    except OpsctlError as exc:
        return Fact(check, False, exc.message, exc.hint)
    except Exception as exc:
        # Named by its class only: a library's message may quote data, and this text reaches the audit trail.
        log.debug("%s: unexpected failure", check, exc_info=traceback_safe(exc))
        return Fact(check, False, f"unexpected {exc.__class__.__name__}",
                    "run: opsctl --verbose doctor (the details are logged there, on stderr only)")


DOCTOR = Command("doctor", _doctor)
