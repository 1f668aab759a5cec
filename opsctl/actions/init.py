"""opsctl init: one repository, and every other target made a replica of it; nothing existing is touched.

All targets share the repository's identity and master key, so the same password opens each and
backups can be replicated as files instead of being made again (see actions/backup.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from opsctl.actions.context import App, Session, exit_code_for, outcome_for
from opsctl.errors import ExitCode, OpsctlError
from opsctl.reports import console
from opsctl.reports.progress import board
from opsctl.targets import Target
from opsctl.targets.replicate import check_identity, replicate, seed
from opsctl.targets.errors import NotAReplica


@dataclass(frozen=True)
class InitRow:
    target: str
    status: str = ""
    error: str | None = None
    hint: str | None = None
    bad_input: bool = False


def init(app: App, target_name: str | None = None) -> ExitCode:
    session = Session(app)
    with session.exclusive("init"), session.audited("init") as record:
        _ = session.restic.version
        session.read_secrets(database=False)
        rows = _init_all(app, session, [session.target(c) for c in session.policy.targets], target_name)
        record.targets = [row.target for row in rows]
        record.details = {row.target: row.status or "failed" for row in rows}
        failed = [r for r in rows if r.error is not None]
        code = exit_code_for(len(rows) - len(failed), len(failed))
        if failed and code == ExitCode.FAILURE and all(r.bad_input for r in failed):
            code = ExitCode.BAD_INPUT  # e.g. a folder that holds other files: nothing was written
        record.outcome = outcome_for(code)
    console.show_init(app, rows)
    return code


def _init_all(app: App, session: Session, targets: list[Target], only: str | None) -> list[InitRow]:
    """Find the repository the targets already share (or create it in the first), then seed the rest."""
    session.target_configs(only)  # an unknown name is bad input before anything happens
    state: dict[str, bool | InitRow] = {t.name: _existing(session, t) for t in targets}
    origin = next((t for t in targets if state[t.name] is True), None)
    rows: dict[str, InitRow] = {n: s for n, s in state.items() if isinstance(s, InitRow)}
    wanted = [t for t in targets if only in (None, t.name) and t.name not in rows]
    if origin is None:
        origin = next((t for t in targets if t.name not in rows), None)
        if origin is None:
            return [rows[t.name] for t in targets if only in (None, t.name)]
        rows[origin.name] = _guarded(origin, lambda: _create(session, origin))
        if rows[origin.name].error:
            return [rows[t.name] for t in targets if t.name in rows and only in (None, t.name)]
    for target in wanted:
        if target.name in rows:
            continue
        if state[target.name] is True:
            rows[target.name] = _guarded(target, lambda t=target: _describe_existing(origin, t))
        else:
            rows[target.name] = _guarded(target, lambda t=target: _make_replica(app, origin, t))
    return [rows[t.name] for t in targets if t.name in rows and only in (None, t.name)]


def _existing(session: Session, target: Target) -> bool | InitRow:
    try:
        target.probe()
    except OpsctlError:
        pass  # a missing folder or bucket is what init is for; other problems show when we write
    try:
        return session.restic.exists(session.repository(target))
    except OpsctlError as exc:
        return InitRow(target.display, error=exc.message, hint=exc.hint, bad_input=exc.exit_code == ExitCode.BAD_INPUT)


def _guarded(target: Target, step) -> InitRow:
    try:
        return step()
    except OpsctlError as exc:
        return InitRow(target.display, error=exc.message, hint=exc.hint, bad_input=exc.exit_code == ExitCode.BAD_INPUT)


def _create(session: Session, target: Target) -> InitRow:
    target.prepare_init()
    session.restic.init(session.repository(target))
    return InitRow(target.display, "repository created (encrypted, compressed)")


def _describe_existing(origin: Target, target: Target) -> InitRow:
    if origin.name == target.name:
        return InitRow(target.display, "already initialised; left unchanged")
    with origin.files() as source, target.files() as dest:
        try:
            check_identity(source, dest, target.display)
        except NotAReplica:
            return InitRow(target.display, f"already initialised as a separate repository (not a replica of "
                                           f"{origin.name}); left unchanged, backups to it are made separately")
    return InitRow(target.display, f"already initialised; a replica of {origin.name}")


def _make_replica(app: App, origin: Target, target: Target) -> InitRow:
    """Same identity and keys as the origin, then every file it has: restic alone can open the copy."""
    target.prepare_init()
    started = time.monotonic()
    with origin.files() as source, target.files() as dest, board(app) as shown:
        seed(source, dest, target.display)
        transfer = shown.transfer(f"copy → {target.name}")
        copied = replicate(source, dest, on_bytes=transfer.advance)
        transfer.finish("ok")
    extra = f", {copied.files} files copied in {time.monotonic() - started:.1f}s" if copied.files else ""
    return InitRow(target.display, f"replica of {origin.name} created{extra}")
