"""opsctl prune: apply each target's retention to this policy's snapshots only, then free the space."""

from __future__ import annotations

from dataclasses import dataclass

from opsctl.actions.context import App, Session, as_operator_error, exit_code_for, outcome_for
from opsctl.errors import ExitCode
from opsctl.reports import console
from opsctl.restic.models import Snapshot
from opsctl.targets.replicate import mark_forgotten


@dataclass(frozen=True)
class PruneRow:
    target: str
    location: str
    rules: dict[str, int]
    kept: tuple[Snapshot, ...] = ()
    removed: tuple[Snapshot, ...] = ()
    dry_run: bool = False
    error: str | None = None
    hint: str | None = None


def prune(app: App, dry_run: bool = False, target_name: str | None = None) -> ExitCode:
    session = Session(app)
    with session.exclusive("prune"), session.audited("prune") as record:
        _ = session.restic.version
        session.read_secrets(database=False)
        rows = session.on_each_target(target_name, lambda c: _prune_one(session, c, dry_run))
        failed = sum(r.error is not None for r in rows)
        code = exit_code_for(len(rows) - failed, failed)
        record.outcome = outcome_for(code)
        record.targets = [r.location for r in rows]
        record.details = {"dry_run": dry_run, "removed": {r.target: [s.short_id for s in r.removed] for r in rows}}
    console.show_prune(app, rows)
    return code


def _prune_one(session: Session, config, dry_run: bool) -> PruneRow:
    rules = session.retention(config)
    location = config.name
    try:
        target = session.target(config)
        location = target.display
        target.probe()
        repo = session.repository(target)
        # Only snapshots carrying this policy's tags are considered: another policy's never are.
        tags = ["opsctl", f"policy={session.policy.name}"]
        plans = session.restic.forget_by_policy(repo, tags, rules, dry_run=True)
        removed = tuple(s for plan in plans for s in plan.remove)
        kept = tuple(s for plan in plans for s in plan.keep)
        if removed and not dry_run:
            # Marked in the target first, so no replication (of any policy, from any host) brings them back.
            with target.files() as files:
                mark_forgotten(files, [s.id for s in removed])
            session.restic.forget(repo, [s.id for s in removed])
            session.restic.prune(repo)
    except Exception as exc:  # noqa: BLE001 - one target's failure is its row, the others go on
        error = as_operator_error(exc, location)
        return PruneRow(config.name, location, rules, dry_run=dry_run, error=error.message, hint=error.hint)
    return PruneRow(config.name, location, rules, kept, removed, dry_run)
