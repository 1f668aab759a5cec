"""The one lifecycle every command goes through.

A command declares what it needs (the policy's run lock, which secrets, restic) and a body that
returns a typed Outcome. The runner loads the policy, then takes the lock, reads the secrets
before any child process starts, runs the body, and tells its subscribers: started, then
finished(outcome) or failed(problem). The audit trail and the run record are subscribers; a
refusal (bad policy, a lock held by another run, bad input) or an interrupt is recorded like any
other outcome. Adding a feature that must see every run means adding a subscriber, not a wrapper.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Generic, TypeVar

from opsctl import audit
from opsctl.actions.audit_copies import AuditCopies
from opsctl.actions.context import App, Session
from opsctl.actions.events import Run, Subscriber
from opsctl.actions.fleet_publish import FleetPublish
from opsctl.actions.metrics import MetricsFile
from opsctl.actions.notifications import Notifier
from opsctl.actions.outcome import Outcome, Problem, Refused, failure_word
from opsctl.audit import runs
from opsctl.errors import ExitCode, JobSkipped, OpsctlError, PolicyBusy
from opsctl.policy.load import state_dir_despite_errors
from opsctl.sources import Source
from opsctl.sources.errors import traceback_safe
from opsctl.targets import Access

log = logging.getLogger(__name__)
R = TypeVar("R")


class Secrets(Enum):
    """Which passwords a command reads up front (a missing one stops it before anything starts)."""

    NONE = "none"
    REPOSITORY = "repository"
    ALL = "all"


@dataclass(frozen=True)
class Command(Generic[R]):
    """A command: its name in the audit trail, what it needs, and its body."""

    name: str
    body: Callable[[Session, R], Outcome]
    lock: bool = False
    secrets: Secrets = Secrets.NONE
    restic: bool = False
    without_policy: Callable[[R], Outcome] | None = None  # what it can still do when no policy file is found
    precheck: Callable[[App, R], None] | None = None  # refuses a request that cannot work, before anything else
    access: Access = Access.WRITE  # DELETE: it removes files from targets (S3 then uses its prune_credentials)
    scheduled: bool = False  # a timer's run: a busy policy past lock_wait means skipped, not failed
    lock_wait: Callable[[Session], float] | None = None  # seconds to wait for the policy lock (default lock_wait)
    # A command that records nothing and opens no session: an auditor's (no policy, no secret, no network: it
    # runs on an auditor's laptop, which has no trail of the policy), or one that reads the policy file alone and
    # writes nothing of the policy's (schedule install --dry-run; root installing the units of another user).
    standalone: Callable[[R], Outcome] | None = None
    # A reader whose answer is about others, not this policy (fleet status: another host failing): it leaves the
    # audit line only (none on another user's policy), never a run record, metrics, copies or notifications, and
    # needs no state folder (none is checked or swept).
    about_others: bool = False
    # The database servers the body restores to (a drill on the recovery server): their passwords are read up
    # front and their leftovers swept, and nothing connects to the others. Default: the policy's own server.
    servers: Callable[[Session, R], list[Source]] | None = None


def run(app: App, command: Command[R], request: R,
        subscribers: Sequence[Subscriber] | None = None) -> Outcome:
    """Run one command through the lifecycle; every ending is an Outcome (a Refused one when it stopped)."""
    if command.standalone is not None:
        return _standalone(app, command.standalone, request)
    session, current, unloadable = _open(app, command)
    # A reader of another user's records (an auditor's status --offline) records nothing, not even the audit
    # line: only the owner may write there.
    visiting = session is not None and session.visiting
    listeners = _Listeners(() if visiting else _subscribers(command, subscribers))
    try:
        if command.precheck is not None:
            command.precheck(app, request)
        if session is None and command.without_policy is not None and _policy_path(app) is None:
            outcome = command.without_policy(request)
            listeners.finished(current, outcome)
            return outcome
        outcome = _body(_loaded(session, unloadable), command, request, lambda: listeners.started(current))
    except (OpsctlError, KeyboardInterrupt) as exc:
        return listeners.failed(_attempted(current, session), exc)
    except Exception as exc:  # noqa: BLE001 - every ending is an outcome; --verbose re-raises a safe stand-in
        refused = listeners.failed(_attempted(current, session), exc)
        if app.verbose:  # the traceback is what --verbose is for; never a driver's text (it quotes rows)
            raise traceback_safe(exc) from None
        return refused
    listeners.finished(current, outcome)
    return outcome


def _standalone(app: App, body: Callable[[R], Outcome], request: R) -> Outcome:
    """A command that touches nothing but the files it is given: no policy, no lock, no subscribers."""
    try:
        return body(request)
    except KeyboardInterrupt:
        return Refused(INTERRUPTED, "interrupted")
    except OpsctlError as exc:
        return Refused(Problem.of(exc), failure_word(exc))
    except Exception as exc:  # noqa: BLE001 - every ending is an outcome, as for any command
        if app.verbose:
            raise traceback_safe(exc) from None
        return Refused(Problem(f"unexpected error ({exc.__class__.__name__}); this is a bug in opsctl",
                               "run the same command with --verbose to see where it happened, and report it"))


def _open(app: App, command: Command[R]) -> tuple[Session | None, Run, OpsctlError | None]:
    """The session, and the run as subscribers see it; a policy that cannot be loaded is still given a place."""
    started = Run(command.name, _now(), time.monotonic(), Path("."), scheduled=command.scheduled)
    try:
        session = Session(app, command.access)
    except OpsctlError as exc:
        path = _policy_path(app)
        return None, replace(started, state_dir=state_dir_despite_errors(path), policy_file=_text(path)), exc
    return session, replace(started, state_dir=session.state_dir, policy=session.policy.name,
                            policy_file=str(session.policy_path), settings=session.policy), None


def _attempted(run: Run, session: Session | None) -> Run:
    """The run with what it was working on when it stopped (a restore: its target and snapshot)."""
    if session is None:
        return run
    return replace(run, targets=session.attempt.targets, snapshot_ids=session.attempt.snapshot_ids)


def _loaded(session: Session | None, unloadable: OpsctlError | None) -> Session:
    """The session, or the reason the policy could not be loaded (read once: it may be a pipe)."""
    if session is None:
        raise unloadable or OpsctlError("the policy could not be loaded")
    return session


def _body(session: Session, command: Command[R], request: R, started: Callable[[], None]) -> Outcome:
    keeps_state = not command.about_others  # such a reader uses no state (its audit line checks its own folder)
    if keeps_state:
        session.check_state_dir()
    with ExitStack() as stack:
        if command.lock:
            wait_s = None if command.lock_wait is None else command.lock_wait(session)
            try:
                stack.enter_context(session.exclusive(command.name, wait_s))
            except PolicyBusy as busy:
                if command.scheduled:
                    raise _skipped(command, busy) from None
                raise
        started()  # after the lock: a run that waits for another is not yet running
        servers = None
        if command.secrets is not Secrets.NONE:  # before any child process: a missing one stops everything
            session.read_secrets(database=command.secrets is Secrets.ALL)
            if command.secrets is Secrets.ALL:
                servers = session.sources if command.servers is None else command.servers(session, request)
        if keeps_state:
            _sweep(session, servers)
        if command.restic:
            _ = session.restic.version
        return command.body(session, request)


def _skipped(command: Command[R], busy: PolicyBusy) -> JobSkipped:
    return JobSkipped(f"{command.name} skipped: {busy}; its next run was due before the policy was free",
                      "this run is not queued: the next one runs on time; if runs overlap often, space the "
                      "schedule out (see opsctl schedule status)")


def _sweep(session: Session, databases: list[Source] | None) -> None:
    """What killed runs left (scratch copies of customer data, secret files) goes before anything new is made."""
    try:
        session.sweep_leftovers(databases)
    except OSError as exc:  # never the reason a command fails; the next run tries again
        log.warning("could not remove what a killed run left behind (%s)", exc.strerror)


INTERRUPTED = Problem("interrupted: nothing half-done was kept; run the command again when ready", None,
                      ExitCode.INTERRUPTED)


class _Listeners:
    """Tells each subscriber; a subscriber that fails is logged, never the reason a command fails."""

    def __init__(self, subscribers: Sequence[Subscriber]) -> None:
        self._subscribers = subscribers

    def started(self, run: Run) -> None:
        self._tell(lambda s: s.started(run))

    def finished(self, run: Run, outcome: Outcome) -> None:
        self._tell_ending(lambda s: s.finished(run, outcome))

    def failed(self, run: Run, error: BaseException) -> Refused:
        if isinstance(error, KeyboardInterrupt):
            problem = INTERRUPTED
        elif isinstance(error, OpsctlError):
            problem = Problem.of(error)
        else:  # never the exception's text: a library's message may quote data
            log.debug("unexpected error", exc_info=traceback_safe(error))
            problem = Problem(f"unexpected error ({error.__class__.__name__}); this is a bug in opsctl",
                              "run the same command with --verbose to see where it happened, and report it")
        word = failure_word(error)
        self._tell_ending(lambda s: s.failed(run, problem, word))
        return Refused(problem, word)

    def _tell(self, event: Callable[[Subscriber], None]) -> None:
        with _signals_held():  # a Ctrl-C or SIGTERM now would leave half the records written; it waits
            self._tell_each(event)

    def _tell_ending(self, event: Callable[[Subscriber], None]) -> None:
        """A stop request held while the ending was told arrives here: the run is over and recorded as it
        ended, so the process ends with that outcome, never "interrupted" after a backup that worked."""
        with suppress(KeyboardInterrupt):
            self._tell(event)

    def _tell_each(self, event: Callable[[Subscriber], None]) -> None:
        for subscriber in self._subscribers:
            try:
                event(subscriber)
            except Exception as exc:  # noqa: BLE001 - recording a run must never be why it fails
                log.warning("could not record this run (%s): %s", subscriber.__class__.__name__,
                            getattr(exc, "strerror", None) or exc.__class__.__name__)


class AuditTrail:
    """Subscriber: one line in `state_dir/audit.jsonl` per run, whatever its ending."""

    def started(self, run: Run) -> None:
        pass

    def finished(self, run: Run, outcome: Outcome) -> None:
        facts = outcome.audit()
        self._append(run, outcome.word, int(outcome.exit_code), facts.error,
                     targets=facts.targets, snapshot_ids=facts.snapshot_ids, details=facts.details)

    def failed(self, run: Run, problem: Problem, word: str) -> None:
        self._append(run, word, int(problem.exit_code), problem.message, targets=run.targets,
                     snapshot_ids=run.snapshot_ids, details={})

    @staticmethod
    def _append(run: Run, word: str, code: int, error: str | None, *, targets: tuple[str, ...],
                snapshot_ids: tuple[str, ...], details: dict[str, object]) -> None:
        entry = audit.AuditEntry(command=run.command, policy=run.policy, policy_file=run.policy_file, outcome=word,
                                 exit_code=code, targets=targets, snapshot_ids=snapshot_ids, error=error,
                                 details=details, duration_s=run.duration_s)
        audit.append(audit.trail_path(run.state_dir), entry)


class RunRecord:
    """Subscriber: the last outcome of each command and target, for status, notifications and metrics.

    Only runs that started count: a mistyped option or a busy lock is no outcome of the command
    (the audit trail has those), and must not hide how its last real run ended.
    """

    def __init__(self) -> None:
        self._started = False

    def started(self, run: Run) -> None:
        if run.policy is not None:
            self._started = True
            runs.started(run.state_dir, run.command, run.started_at)

    def finished(self, run: Run, outcome: Outcome) -> None:
        facts = outcome.target_facts()
        targets = tuple(runs.TargetRun(r.target, r.location, r.ok, _now(), round(r.duration_s, 3), r.error, r.hint,
                                       facts=facts.get(r.target, {}))
                        for r in outcome.target_results())
        self._record(run, outcome.word, int(outcome.exit_code), outcome.audit().error, targets)

    def failed(self, run: Run, problem: Problem, word: str) -> None:
        if word == "skipped" and run.policy is not None:  # never started, yet the schedule must show it
            runs.skipped(run.state_dir, run.command, run.started_at, problem.message)
            return
        self._record(run, word, int(problem.exit_code), problem.message, ())

    def _record(self, run: Run, word: str, code: int, error: str | None, targets: tuple[runs.TargetRun, ...]) -> None:
        if not self._started and not (run.scheduled and run.policy is not None):  # a timer's refusal is its outcome
            return
        ended = runs.CommandRun(run.command, word, code, _now(), run.duration_s, error, targets)
        runs.record(run.state_dir, ended, run.started_at)


@contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM: noted, and raised as an interrupt right after. (Masking them is not enough:
    the kernel may hand a signal to another thread, and Python then runs the handler in this one anyway.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []
    earlier = {s: signal.signal(s, lambda signum, _frame: arrived.append(signum)) for s in _STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in earlier.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)  # None: set outside Python
    if arrived:
        raise KeyboardInterrupt


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _subscribers(command: Command[R], given: Sequence[Subscriber] | None) -> Sequence[Subscriber]:
    """Who hears of this run: those given, else all (a reader about others: the audit trail only)."""
    if given is not None:
        return given
    return [AuditTrail()] if command.about_others else default_subscribers()


def default_subscribers() -> list[Subscriber]:
    """The records first, then the metrics they feed, then the trail's copies and this host's status on the targets,
    and notifications (each may take seconds when a target or an endpoint is slow)."""
    return [AuditTrail(), RunRecord(), MetricsFile(), AuditCopies(), FleetPublish(), Notifier()]


def _policy_path(app: App) -> Path | None:
    try:
        return app.resolve_policy_path()
    except OpsctlError:
        return None


def _text(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
