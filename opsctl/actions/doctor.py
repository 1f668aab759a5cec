"""opsctl doctor: a preflight of everything a backup needs, each line OK or a problem with what to do."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from opsctl.actions import history
from opsctl.actions.context import App, Session
from opsctl.errors import ExitCode, OpsctlError
from opsctl.reports import console
from opsctl.reports.console import human_duration
from opsctl.targets import Fact, Target, TargetUnreachable
from opsctl.targets.replicate import check_identity


def doctor(app: App) -> ExitCode:
    session = Session(app)
    sections: list[tuple[str, list[Fact]]] = [("opsctl", _basics(session)), ("database", _database(session))]
    targets = [session.target(c) for c in session.policy.targets]
    with ThreadPoolExecutor(max_workers=len(targets)) as pool:
        per_target = list(pool.map(lambda t: _target(session, t), targets))
    sections += [(t.display, facts) for t, facts in zip(targets, per_target)]
    sections.append(("replicas", _replicas(targets, per_target) + _retention_order(session)))
    sections.append(("recovery", _recovery(session)))
    console.show_doctor(app, sections)
    return ExitCode.OK if all(f.ok for _, facts in sections for f in facts) else ExitCode.FAILURE


def _basics(session: Session) -> list[Fact]:
    facts = [_fact("restic", lambda: f"restic {session.restic.version}")]
    facts.append(_fact("repository password", lambda: (session.read_secrets(database=False),
                                                       f"readable from {session.policy.repository_password.describe()}")[1]))
    return facts


def _database(session: Session) -> list[Fact]:
    try:
        sources = session.sources
    except OpsctlError as exc:
        return [Fact("credentials", False, exc.message, exc.hint)]
    return [_fact(source.database, source.probe) for source in sources]


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
    healthy = [t for t, facts in zip(targets, per_target) if all(f.ok for f in facts)]
    if len(healthy) < 2:
        return []
    origin, facts = healthy[0], []
    with origin.files() as source:
        for target in healthy[1:]:
            facts.append(_fact(target.name, lambda t=target: _identity(source, t, origin.name)))
    return facts


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
        return facts + [Fact("last drill", True, "none recorded on this machine",
                             "run: opsctl drill (it measures RTO and RPO against the policy's objectives)")]
    last = drills[-1]
    measured = (f"RTO {human_duration(last['rto_s'])}, RPO {human_duration(last['rpo_s'])}"
                if last["rto_s"] is not None and last["rpo_s"] is not None else "restore not proven")
    hint = None if last["verdict"] == "PASSED" else f"read its report ({last['report']}) and act on what it says"
    return facts + [Fact("last drill", True, f"{last['verdict']} on {last['time']} from {last['target']}: {measured}",
                         hint)]


def _identity(source, target: Target, origin: str) -> str:
    with target.files() as dest:
        check_identity(source, dest, target.display)
    return f"a replica of {origin} (same repository, same key)"


def _fact(check: str, probe) -> Fact:
    try:
        return Fact(check, True, probe())
    except OpsctlError as exc:
        return Fact(check, False, exc.message, exc.hint)
    except Exception as exc:  # noqa: BLE001 - doctor reports every problem, it never stops at one
        return Fact(check, False, f"{exc.__class__.__name__}: {str(exc)[:200]}")
