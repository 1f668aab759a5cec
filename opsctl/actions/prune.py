"""opsctl prune: apply each target's retention to this policy's snapshots only, then free the space.

On an S3 bucket with Object Lock the space is not freed yet: restic's deletes only add delete markers
(allowed on a locked bucket, so prune works as usual), and the locked versions stay until their lock
ends. prune says so instead of pretending the storage came back.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from rich.markup import escape

from opsctl.actions.context import App, Session, as_operator_error
from opsctl.actions.outcome import AuditFacts, PerTarget, Problem, TargetResult
from opsctl.actions.runner import Command, Secrets
from opsctl.policy.model import S3TargetConfig
from opsctl.policy.model import Target as TargetConfig
from opsctl.reports import console
from opsctl.restic.models import Snapshot
from opsctl.targets import Access
from opsctl.targets.replicate import mark_forgotten


@dataclass(frozen=True)
class PruneRequest:
    dry_run: bool = False
    target: str | None = None


@dataclass(frozen=True)
class Pruned:
    """One target's keep-rules and what they kept and removed (or would remove, in a dry run)."""

    rules: dict[str, int]
    kept: tuple[Snapshot, ...] = ()
    removed: tuple[Snapshot, ...] = ()
    note: str | None = None  # when the storage comes back later than the snapshots go (Object Lock)

    def to_json(self) -> dict[str, Any]:
        return {"rules": self.rules, "kept": [s.id for s in self.kept], "removed": [s.id for s in self.removed],
                "note": self.note}


@dataclass(frozen=True)
class PruneOutcome(PerTarget[Pruned]):
    dry_run: bool

    def to_json(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "targets": [{**r.to_json(), "dry_run": self.dry_run} for r in self.targets]}

    def audit(self) -> AuditFacts:
        removed = {r.target: [s.short_id for s in (r.value.removed if r.value else ())] for r in self.targets}
        return AuditFacts(targets=tuple(r.location for r in self.targets), error=super().audit().error,
                          details={"dry_run": self.dry_run, "removed": removed})

    def show(self, app: App) -> None:
        show_prune(app, self)


def _prune(session: Session, request: PruneRequest) -> PruneOutcome:
    results = session.on_each_target(request.target, lambda c: _prune_one(session, c, request.dry_run))
    return PruneOutcome(tuple(results), request.dry_run)


def _prune_one(session: Session, config: TargetConfig, dry_run: bool) -> TargetResult[Pruned]:
    started, rules, location = time.monotonic(), session.retention(config), config.name
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
        return TargetResult(config.name, location, Pruned(rules), Problem.of(as_operator_error(exc, location)),
                            time.monotonic() - started)
    return TargetResult(config.name, location, Pruned(rules, kept, removed, lock_note(config)),
                        duration_s=time.monotonic() - started)


def lock_note(config: TargetConfig) -> str | None:
    """What prune frees on a bucket whose policy asks for Object Lock: nothing yet (None for other targets)."""
    lock = config.object_lock if isinstance(config, S3TargetConfig) else None
    if lock is None:
        return None
    return (f"object lock {lock.mode}, {lock.days} days: removed snapshots only get delete markers; their files' "
            f"locked versions, and the storage they take, stay until each one's lock expires ({lock.days} days "
            "after it was written), and go then only through a lifecycle rule that expires noncurrent versions")


def show_prune(app: App, pruned: PruneOutcome) -> None:
    verb = "would remove" if pruned.dry_run else "removed"
    for r in pruned.targets:
        if not r.ok:
            console.verdict_line(app, False, r.location, r.error, r.hint)
            continue
        if r.value is None:  # an ok row always has its value
            continue
        rules = ", ".join(f"{k.replace('_', '-')} {v}" for k, v in sorted(r.value.rules.items()))
        app.out.print(f"ok  {escape(r.location)} ({rules}): keeps {len(r.value.kept)}, {verb} {len(r.value.removed)}")
        for s in r.value.removed:
            app.out.print(f"      {verb} {s.short_id} {s.time:%Y-%m-%d %H:%M:%S} {escape(s.tag('db') or '?')}")
        if r.value.note:
            app.out.print(f"      note: {escape(r.value.note)}")
    if pruned.dry_run:
        app.out.print("Dry run: nothing was removed.")


PRUNE = Command("prune", _prune, lock=True, restic=True, secrets=Secrets.REPOSITORY, access=Access.DELETE)
