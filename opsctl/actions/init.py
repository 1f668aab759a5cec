"""opsctl init: one repository, and every other target made a replica of it; nothing existing is touched.

All targets share the repository's identity and master key, so the same password opens each and
backups can be replicated as files instead of being made again (see actions/backup.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from functools import partial
from typing import Any

from opsctl.actions.context import App, Session
from opsctl.actions.outcome import AuditFacts, PerTarget, Problem, TargetResult
from opsctl.actions.runner import Command, Secrets
from opsctl.errors import BadInput, ExitCode, OpsctlError, PolicyInvalid
from opsctl.reports import console
from opsctl.reports.progress import board
from opsctl.targets import Access, Target
from opsctl.targets.errors import NotAReplica
from opsctl.targets.replicate import check_identity, replicate, seed

InitRow = TargetResult[str]


@dataclass(frozen=True)
class Initialised(PerTarget[str]):
    """Each target's repository: created, made a replica, or found and left unchanged; or why not."""

    @property
    def exit_code(self) -> ExitCode:
        code = super().exit_code
        failed = [r.problem for r in self.targets if r.problem is not None]
        if code == ExitCode.FAILURE and all(p.exit_code == ExitCode.BAD_INPUT for p in failed):
            return ExitCode.BAD_INPUT  # e.g. a folder that holds other files: nothing was written
        return code

    def to_json(self) -> dict[str, Any]:
        return {"targets": [{**r.summary(), "status": r.value or ""} for r in self.targets]}

    def audit(self) -> AuditFacts:
        return AuditFacts(targets=tuple(r.location for r in self.targets), error=super().audit().error,
                          details={r.location: r.value or "failed" for r in self.targets})

    def show(self, app: App) -> None:
        show_init(app, self)


def _precheck_locks(session: Session) -> None:
    """A lock shorter than retention would leave kept snapshots deletable: refused before any bucket is made."""
    problems = session.policy.lock_problems()
    if problems:
        raise PolicyInvalid(str(session.policy_path), problems)


def _init(session: Session, target_name: str | None) -> Initialised:
    _precheck_locks(session)
    return Initialised(tuple(_init_all(session.app, session, [session.target(c) for c in session.policy.targets],
                                       target_name)))


def _init_all(app: App, session: Session, targets: list[Target], only: str | None) -> list[InitRow]:
    """Find the repository the targets already share (or create it in the first), then seed the rest."""
    session.target_configs(only)  # an unknown name is bad input before anything happens
    state: dict[str, bool | InitRow] = {t.name: _existing(session, t) for t in targets}
    origin = next((t for t in targets if state[t.name] is True), None)
    rows: dict[str, InitRow] = {n: s for n, s in state.items() if isinstance(s, TargetResult)}
    wanted = [t for t in targets if only in (None, t.name) and t.name not in rows]
    if origin is None:
        origin = next((t for t in targets if t.name not in rows), None)
        if origin is None:
            return [rows[t.name] for t in targets if only in (None, t.name)]
        rows[origin.name] = _guarded(origin, lambda: _create(session, origin))
        if not rows[origin.name].ok:
            return [rows[t.name] for t in targets if t.name in rows and only in (None, t.name)]
    for target in wanted:
        if target.name in rows:
            continue
        if state[target.name] is True:
            rows[target.name] = _guarded(target, partial(_describe_existing, origin, target))
        else:
            rows[target.name] = _guarded(target, partial(_make_replica, app, origin, target))
    return [rows[t.name] for t in targets if t.name in rows and only in (None, t.name)]


def _existing(session: Session, target: Target) -> bool | InitRow:
    with suppress(OpsctlError):  # a missing folder or bucket is what init is for; other problems show when we write
        target.probe()
    try:
        return session.restic.exists(session.repository(target))
    except OpsctlError as exc:
        return TargetResult(target.name, target.display, problem=Problem.of(exc))


def _guarded(target: Target, step: Callable[[], str]) -> InitRow:
    started = time.monotonic()
    try:
        return TargetResult(target.name, target.display, step(), duration_s=time.monotonic() - started)
    except OpsctlError as exc:
        return TargetResult(target.name, target.display, problem=Problem.of(exc), duration_s=time.monotonic() - started)


def _create(session: Session, target: Target) -> str:
    target.prepare_init()
    session.restic.init(session.repository(target))
    return "repository created (encrypted, compressed)"


def _describe_existing(origin: Target, target: Target) -> str:
    _keeps_the_lock(target)
    if origin.name == target.name:
        return "already initialised; left unchanged"
    with origin.files() as source, target.files() as dest:
        try:
            check_identity(source, dest, target.display)
        except NotAReplica:
            return (f"already initialised as a separate repository (not a replica of {origin.name}); "
                    "left unchanged, backups to it are made separately")
    return f"already initialised; a replica of {origin.name}"


def _keeps_the_lock(target: Target) -> None:
    """A repository already there is left as it is, but its storage must lock what the policy's object_lock asks."""
    held = target.immutability(None)
    if held is not None and held.known and held.hint:
        raise BadInput(f"the repository is there, but its storage keeps {held.detail}, less than the policy's "
                       "object_lock asks", held.hint)


def _make_replica(app: App, origin: Target, target: Target) -> str:
    """Same identity and keys as the origin, then every file it has: restic alone can open the copy."""
    target.prepare_init()
    started = time.monotonic()
    with origin.files() as source, target.files() as dest, board(app) as shown:
        seed(source, dest, target.display)
        transfer = shown.transfer(f"copy → {target.name}")
        copied = replicate(source, dest, on_bytes=transfer.advance)
        transfer.finish("ok")
    extra = f", {copied.files} files copied in {time.monotonic() - started:.1f}s" if copied.files else ""
    return f"replica of {origin.name} created{extra}"


def show_init(app: App, outcome: Initialised) -> None:
    for row in outcome.targets:
        console.verdict_line(app, row.ok, row.location, row.error or row.value, row.hint)


# restic init asks whether the bucket exists, which keys limited to the repository's prefix may not: init
# is a one-time set-up, done with the keys that may do more (prune_credentials, when the target has them).
INIT = Command("init", _init, lock=True, restic=True, secrets=Secrets.REPOSITORY, access=Access.DELETE)
