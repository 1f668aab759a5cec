"""opsctl keys rotate: a new repository password on every target, as one journaled operation.

Order, each step journaled before it is done: stage the new password next to the current one; add
a key for it to every repository (a replica receives its origin's key file, so replicas keep
identical keys) and prove it opens; switch the policy's password; remove the old key by its ID and
prove the old password no longer opens. Until the switch the current password opens everything;
from the switch on the new one does. A target that fails before the switch pauses the rotation
(nothing is switched); one that fails after it stays listed in the journal until a resume.
"""

from __future__ import annotations

import posixpath
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from opsctl.actions.context import App, Session
from opsctl.actions.keys import journal as jr
from opsctl.actions.keys.journal import Journal, TargetState
from opsctl.actions.keys.password import generate, read_new_password_file, store_for
from opsctl.actions.outcome import AuditFacts, Outcome, Problem, TargetResult, plain
from opsctl.actions.runner import Command
from opsctl.errors import BadInput, ExitCode, OpsctlError
from opsctl.restic.errors import TargetUnreachable
from opsctl.targets import Access, Target
from opsctl.targets.replicate import copy_file


@dataclass(frozen=True)
class RotationResult:
    """How a run of `keys rotate` ended; the journal is the final one (or the last one written)."""

    journal: Journal
    outcome: str  # rotated, paused, partial, rolled back
    code: ExitCode
    message: str
    hint: str | None = None


@dataclass(frozen=True)
class RotateRequest:
    dry_run: bool = False
    new_password_file: Path | None = None
    resume: bool = False


@dataclass(frozen=True)
class Rotated(Outcome):
    """How a rotation ended (or, for a dry run, what it would do), target by target."""

    journal: Journal
    result: RotationResult | None  # None: a dry run

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.OK if self.result is None else self.result.code

    def target_results(self) -> list[TargetResult[TargetState]]:
        return [TargetResult(t.name, t.display, t, Problem(t.error) if t.error else None) for t in self.journal.targets]

    def to_json(self) -> dict[str, Any]:
        targets = plain(self.journal.targets)
        if self.result is None:
            return {"dry_run": True, "rotation": self.journal.rotation, "step": self.journal.step, "targets": targets}
        return {"dry_run": False, "rotation": self.journal.rotation, "result": self.result.outcome,
                "message": self.result.message, "hint": self.result.hint, "targets": targets}

    def audit(self) -> AuditFacts:
        if self.result is None:
            return AuditFacts(details={"dry_run": True})
        return AuditFacts(targets=tuple(t.display for t in self.journal.targets),
                          error=None if self.result.code == ExitCode.OK else self.result.message,
                          details=_audit_details(self.result))

    def show(self, app: App) -> None:
        if self.result is None:
            show_plan(app, self.journal)
        else:
            show_rotation(app, self.result)


def _rotate(session: Session, request: RotateRequest) -> Rotated:
    journal = jr.load(session.state_dir)
    if journal is None and request.resume:
        raise BadInput("there is no interrupted key rotation to resume", "start one with: opsctl keys rotate")
    if journal is not None and request.new_password_file is not None:
        raise BadInput(f"key rotation {journal.rotation} was interrupted and must be finished first",
                       "run: opsctl keys rotate --resume (it keeps the password staged then)")
    if request.dry_run:
        return Rotated(journal or _plan(session), None)
    result = Rotation(session, journal or _begin(session, request.new_password_file)).run()
    return Rotated(result.journal, result)


def _plan(session: Session) -> Journal:
    """Preflight only: what a rotation would do, as the journal it would start with."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    store = store_for(session.policy.repository_password, session.state_dir, stamp)
    return Journal(rotation=stamp, started=_now(), step="plan", targets=tuple(_preflight(session, store.current())))


def _begin(session: Session, new_password_file: Path | None) -> Journal:
    """Preflight, then journal the rotation and stage its password; no repository is touched yet."""
    new = read_new_password_file(new_password_file) if new_password_file else generate()
    journal = _plan(session)
    store = store_for(session.policy.repository_password, session.state_dir, journal.rotation)
    if new.strip() == store.current().strip():
        raise BadInput("the new password is the current one", "choose another, or let opsctl generate one")
    journal = jr.record_step(session.state_dir, journal, "stage")
    session.app.checkpoints.reached("stage")
    store.stage(new)
    session.app.checkpoints.reached("stage+")
    return journal


def _preflight(session: Session, current: bytes) -> list[TargetState]:
    """Every target reachable and opened by the current password; otherwise stop, naming the target."""
    targets = [session.target(c) for c in session.policy.targets]
    states: list[TargetState] = []
    configs: dict[str, bytes] = {}
    for target in targets:
        try:
            target.probe()
            key = next(k for k in session.restic.keys(target.repository(current)) if k.current)
            configs[target.name] = _config_of(target)
        except OpsctlError as exc:
            raise OpsctlError(f"preflight: {exc.message}; nothing was changed on any target",
                              exc.hint or "fix that target, then run: opsctl keys rotate") from None
        origin = next((n for n, c in configs.items() if c == configs[target.name] and n != target.name), None)
        states.append(TargetState(target.name, target.display, key.id, origin=origin))
    return states


def _config_of(target: Target) -> bytes:
    """The repository's config file: equal configs mean a replica sharing the same key files."""
    try:
        with target.files() as files:
            return files.read("config")
    except OpsctlError:
        raise
    except Exception as exc:  # noqa: BLE001 - the storage library's own failure: name it, carry on no further
        raise TargetUnreachable(f"{target.display}: its config file cannot be read ({exc.__class__.__name__})",
                                "check that the target is up") from None


class Rotation:
    """Drives one journaled rotation from wherever its journal says it stopped."""

    def __init__(self, session: Session, journal: Journal) -> None:
        self.session, self.journal = session, journal
        self.store = store_for(session.policy.repository_password, session.state_dir, journal.rotation)
        self.targets = {t.name: t for t in (session.target(c) for c in session.policy.targets)}
        missing = [t.name for t in journal.targets if t.name not in self.targets]
        if missing:
            raise BadInput(f"the interrupted rotation includes target(s) {', '.join(missing)}, no longer in the policy",
                           "put them back into the policy until the rotation is finished")

    def run(self) -> RotationResult:
        if not self.journal.switched:
            # At step "switch" a file source's staged secret may already be renamed into place.
            if self.journal.step != "switch" and self.store.staged() is None:
                return self._roll_back()
            self._adopt_new_targets()
            failures = self._add_all()
            if failures:
                return self._result("paused", ExitCode.FAILURE, failures)
            self._step("switch")
            self.store.switch()
            self.session.app.checkpoints.reached("switch+")
            self._save(replace(self.journal, switched=True))
        failures = self._remove_all()
        if failures:
            return self._result("partial", ExitCode.PARTIAL, failures)
        self._step("finish")
        self.store.finish()
        jr.remove(self.session.state_dir)
        return self._result("rotated", ExitCode.OK, [])

    def _adopt_new_targets(self) -> None:
        """Targets added to the policy since the rotation began get the new key too: a switch would lock them out."""
        new = [name for name in self.targets if name not in {t.name for t in self.journal.targets}]
        for name in new:
            try:
                state = self._new_state(name)
            except OpsctlError as exc:
                raise OpsctlError(f"target {name} was added to the policy after key rotation {self.journal.rotation} "
                                  f"began and cannot join it: {exc.message}. Nothing was switched",
                                  "fix that target (or take it out of the policy), then: opsctl keys rotate --resume",
                                  ) from None
            self._save(replace(self.journal, targets=(*self.journal.targets, state)))

    def _new_state(self, name: str) -> TargetState:
        """A late target's current key and, for a replica, which journaled target's key files it shares."""
        if self.journal.step == "switch":  # the policy's password may be either one now: do not guess
            raise OpsctlError("the rotation stopped while switching passwords")
        target = self.targets[name]
        target.probe()
        key = next(k for k in self.session.restic.keys(target.repository(self.store.current())) if k.current)
        config = _config_of(target)
        origin = next((t.name for t in self.journal.targets if self._config_or_none(t.name) == config), None)
        return TargetState(name, target.display, key.id, origin=origin)

    def _config_or_none(self, name: str) -> bytes | None:
        """A journaled target's config; one that is down now is simply no origin (it pauses at its own turn)."""
        try:
            return _config_of(self.targets[name])
        except OpsctlError:
            return None

    def _add_all(self) -> list[str]:
        failures = []
        for state in self.journal.targets:
            if state.added:
                continue
            self._step(f"add:{state.name}")
            try:
                new_key = self._add(state)
            except OpsctlError as exc:
                failures.append(state.name)
                self._save(self.journal.with_target(replace(state, error=exc.message)))
                continue
            self.session.app.checkpoints.reached(f"add:{state.name}+")
            self._save(self.journal.with_target(replace(state, new_key=new_key, added=True, error=None)))
        return failures

    def _add(self, state: TargetState) -> str:
        """Give the repository a key for the staged password (unless it has one) and return its ID."""
        target, staged = self.targets[state.name], self.store.staged()
        if staged is None:  # staged before any key is added; a lost one rolls the rotation back instead
            raise OpsctlError("the new password is no longer staged", "run: opsctl keys rotate --resume")
        staged_repo = target.repository(staged)
        if not self.session.restic.opens(staged_repo):
            if state.origin is not None:
                self._copy_key(self.targets[state.origin], target, self._origin_key(state, state.origin))
            else:
                self.session.restic.add_key(target.repository(self.store.current()), staged)
        # Proof: the staged password opens it, and restic names the key it opened with.
        return next(k.id for k in self.session.restic.keys(staged_repo) if k.current)

    def _origin_key(self, state: TargetState, origin_name: str) -> str:
        origin = self.journal.target(origin_name)
        if origin.new_key is None:
            raise OpsctlError(f"{state.display} is a replica of {origin.name}, which has no new key yet",
                              f"it gets the key once {origin.name} has it: opsctl keys rotate --resume")
        return origin.new_key

    def _copy_key(self, origin: Target, target: Target, short_id: str) -> None:
        try:
            with origin.files() as source, target.files() as dest:
                name = next(n for n in source.list("keys") if posixpath.basename(n).startswith(short_id))
                copy_file(source, dest, name)
        except OpsctlError:
            raise
        except Exception as exc:  # noqa: BLE001 - paramiko, botocore, OSError: the target is what failed
            raise TargetUnreachable(f"{target.display}: the new key file could not be copied "
                                    f"({exc.__class__.__name__})",
                                    "check that the target is up, then: opsctl keys rotate --resume") from None

    def _remove_all(self) -> list[str]:
        failures = []
        for state in self.journal.targets:
            if state.removed:
                continue
            self._step(f"remove:{state.name}")
            try:
                self._remove(state)
            except OpsctlError as exc:
                failures.append(state.name)
                self._save(self.journal.with_target(replace(state, error=exc.message)))
                continue
            self.session.app.checkpoints.reached(f"remove:{state.name}+")
            self._save(self.journal.with_target(replace(state, removed=True, error=None)))
        return failures

    def _remove(self, state: TargetState) -> None:
        """Remove exactly the old key (by ID), then prove the old password fails and the new one opens."""
        target, restic = self.targets[state.name], self.session.restic
        new_repo = target.repository(self.store.current())
        if any(k.id == state.old_key for k in restic.keys(new_repo)):
            restic.remove_key(new_repo, state.old_key)
        old = self.store.old()
        if old is not None and restic.opens(target.repository(old)):
            raise OpsctlError(f"the old password still opens {target.display} through a key other than "
                              f"{state.old_key}", "see which with: opsctl keys status; remove it by hand if it is "
                              "yours (restic key remove ID)")
        if not restic.opens(new_repo):
            raise OpsctlError(f"the new password no longer opens {target.display}", "run: opsctl keys status")

    def _roll_back(self) -> RotationResult:
        """The new password was never staged (or was lost): take back any key added for it, forget the rotation."""
        current = self.store.current()
        for state in self.journal.targets:
            if state.new_key is not None:
                repo = self.targets[state.name].repository(current)
                if any(k.id == state.new_key for k in self.session.restic.keys(repo)):
                    self.session.restic.remove_key(repo, state.new_key)
        self.store.discard_staged()
        jr.remove(self.session.state_dir)
        return self._result("rolled back", ExitCode.FAILURE, [],
                            "the interrupted rotation had no staged password to finish with, so it was rolled back: "
                            "every target opens with the current password, as before")

    def _step(self, step: str) -> None:
        self.journal = jr.record_step(self.session.state_dir, self.journal, step)
        self.session.app.checkpoints.reached(step)

    def _save(self, journal: Journal) -> None:
        self.journal = journal
        jr.save(self.session.state_dir, journal)

    def _result(self, outcome: str, code: ExitCode, failures: list[str], message: str | None = None) -> RotationResult:
        return RotationResult(self.journal, outcome, code, message or _message(outcome, failures), _hint(outcome))


def _message(outcome: str, failures: list[str]) -> str:
    names = ", ".join(failures)
    if outcome == "paused":
        return (f"the rotation is paused: {names} could not be given the new key. Nothing was switched; every target "
                "still opens with the current password (those done also with the staged one)")
    if outcome == "partial":
        return (f"the policy now uses the new password, but the old key is still on {names}; "
                "they open with both passwords until the rotation is finished there")
    return "every target now opens only with the new password"


def _hint(outcome: str) -> str | None:
    if outcome in ("paused", "partial"):
        return "when the target is back, run: opsctl keys rotate --resume (opsctl keys status shows what is left)"
    if outcome == "rolled back":
        return "run: opsctl keys rotate"
    return None


def _audit_details(result: RotationResult) -> dict[str, Any]:
    """Targets, key IDs, times and outcome; never a password."""
    j = result.journal
    return {"rotation": j.rotation, "started": j.started, "ended": _now(), "result": result.outcome,
            "targets": {t.name: {"old_key": t.old_key, "new_key": t.new_key, "removed": t.removed, "error": t.error}
                        for t in j.targets}}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def show_plan(app: App, journal: Journal) -> None:
    """--dry-run: what the rotation would do (or, for an interrupted one, what is left)."""
    resumed = journal.step != "plan"
    app.out.print(f"Interrupted rotation {journal.rotation} stopped at step {journal.step}; a resume would finish:"
                  if resumed else "Every target is reachable and opens with the current password. A rotation would:")
    for t in journal.targets:
        how = f"receive {t.origin}'s new key file (a replica)" if t.origin else "get a new key (restic key add)"
        app.out.print(f"  {escape(t.display)}: {how}, then lose old key {t.old_key}")
    app.out.print("Dry run: nothing was changed.")


def show_rotation(app: App, result: RotationResult) -> None:
    j = result.journal
    table = Table(title=f"Key rotation {j.rotation}", title_justify="left")
    for column in ("Target", "Role", "Old key", "New key", "Result"):
        table.add_column(column, no_wrap=True)
    for t in j.targets:
        done = "[red]" + escape(t.error) + "[/]" if t.error else ("rotated" if t.removed else
                                                                  "new key added" if t.added else "not yet")
        table.add_row(escape(t.display), f"replica of {escape(t.origin)}" if t.origin else "repository",
                      t.old_key, t.new_key or "-", done)
    app.out.print(table)
    app.out.print(escape(result.message))
    if result.hint:
        app.out.print(f"what to do: {escape(result.hint)}")


# Removing the old key deletes its key file: the deleting keys of an S3 target.
KEYS_ROTATE = Command("keys rotate", _rotate, lock=True, restic=True, access=Access.DELETE)
