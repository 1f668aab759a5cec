"""What the subscribers that write to the targets after each job share (the audit trail's copies, this host's
status in the fleet folder).

After a job, each target it reached gets the subscriber's writing, all targets at once; a target the job
failed on is left for the next job, and a job that stopped part-way writes nothing. For a backup the
connections are opened when it starts, each on a thread of its own, so that logging in to a NAS or a
bucket adds no time after it; one that could not open, or dropped meanwhile, is opened again, unless it
timed out: a NAS that hangs would only hang again. Writing never changes how a job ends: a target that
cannot be written is a warning, and the next job writes what is missing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass
from functools import partial
from typing import Generic, TypeVar

from opsctl.actions.events import Run
from opsctl.actions.outcome import Outcome, Problem
from opsctl.errors import OpsctlError
from opsctl.policy.model import Policy
from opsctl.policy.model import Target as TargetConfig

T = TypeVar("T")
log = logging.getLogger(__name__)
# The commands that reach the targets anyway: each ends by bringing what the targets hold about it up to date.
JOBS = frozenset({"init", "backup", "prune", "check", "verify", "drill", "restore", "keys rotate", "standby refresh"})


@dataclass(frozen=True)
class Opened(Generic[T]):
    """An open context's value, until closed (a connection opened on one thread may be used and closed on another)."""

    value: T
    context: AbstractContextManager[T]

    def close(self) -> None:
        with suppress(Exception):  # closing a dropped connection: nothing left to keep
            self.context.__exit__(None, None, None)


class AfterJob(Generic[T]):
    """A subscriber that writes to the targets after each job: a subclass says to which targets, over what
    connection (`_open`), and what (`_after`, which calls `each`)."""

    name = "after-job"  # of the threads

    def __init__(self) -> None:
        self._opening: dict[str, Future[Opened[T]]] = {}

    def _targets(self, policy: Policy) -> list[TargetConfig]:
        return list(policy.targets)

    def _open(self, policy: Policy, config: TargetConfig) -> AbstractContextManager[T]:
        raise NotImplementedError

    def _after(self, run: Run, policy: Policy, configs: list[TargetConfig]) -> None:
        raise NotImplementedError

    def started(self, run: Run) -> None:
        policy = run.settings
        if run.command == "backup" and policy is not None:
            self._opening = {c.name: _open_early(partial(self._open, policy, c), f"{self.name}-{c.name}")
                             for c in self._targets(policy)}

    def finished(self, run: Run, outcome: Outcome) -> None:
        try:
            policy = run.settings
            if run.command in JOBS and policy is not None:
                results = outcome.target_results()
                reached = {r.target for r in results if r.ok} if results else {t.name for t in policy.targets}
                configs = [c for c in self._targets(policy) if c.name in reached]
                if configs:
                    self._after(run, policy, configs)
        finally:
            self._close()

    def failed(self, run: Run, problem: Problem, word: str) -> None:  # noqa: ARG002 - the protocol's
        self._close()

    def each(self, policy: Policy, configs: list[TargetConfig], work: Callable[[T], None],
             deadline_s: float | None = None) -> dict[str, str]:
        """work() on every target at once, over its early connection when it works, else a new one; what went wrong
        on each target that failed, by its name. `deadline_s` bounds how long this holds the job's end (None: the
        connections' own timeouts); a target not done by then is said to be late."""
        deadline = None if deadline_s is None else time.monotonic() + deadline_s
        pool = ThreadPoolExecutor(max_workers=len(configs), thread_name_prefix=self.name)
        futures = {c.name: pool.submit(self._quietly, policy, c, work, deadline) for c in configs}
        wait(futures.values(), timeout=deadline_s)
        # One still going ends by its connection's own timeout, or when _close closes its early connection under it.
        pool.shutdown(wait=False, cancel_futures=True)
        errors = {name: f.result() if f.done() else _late(deadline_s) for name, f in futures.items()}
        return {name: error for name, error in errors.items() if error is not None}

    def _quietly(self, policy: Policy, config: TargetConfig, work: Callable[[T], None],
                 deadline: float | None) -> str | None:
        opening = self._opening.get(config.name)
        if opening is not None:
            try:
                work(opening.result(timeout=_left(deadline)).value)
            except Exception as exc:  # noqa: BLE001 - could not open at the start, or dropped meanwhile
                if timed_out(exc) or _left(deadline) == 0:
                    return said(exc)
            else:
                return None
        try:
            with self._open(policy, config) as opened:
                work(opened)
        except Exception as exc:  # noqa: BLE001 - a client library's own error (boto3, paramiko): the next job retries
            return said(exc)
        return None

    def _close(self) -> None:
        """Close each early connection once it has opened (now, or when its thread ends): one a late writing still
        uses is closed under it, which ends that writing at once."""
        for future in self._opening.values():
            future.add_done_callback(_close)
        self._opening = {}


def said(exc: BaseException) -> str:
    """What to say about a failed write: opsctl's own message, else only the error's kind (never a library's text)."""
    if isinstance(exc, OpsctlError):
        return str(exc)
    if timed_out(exc):
        return "it stopped answering, and the wait timed out: the storage may hang"
    return (exc.strerror if isinstance(exc, OSError) else None) or exc.__class__.__name__


def timed_out(exc: BaseException) -> bool:
    """Whether an error comes from a timeout (its own, or one it was raised while handling): the storage hangs."""
    seen: BaseException | None = exc
    while seen is not None:
        # By name too: botocore's and urllib3's timeouts are not TimeoutError.
        if isinstance(seen, TimeoutError) or any("Timeout" in kind.__name__ for kind in type(seen).__mro__):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _late(deadline_s: float | None) -> str:
    return f"it did not finish within {deadline_s or 0:.0f} s: the storage may hang"


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def _open_early(opener: Callable[[], AbstractContextManager[T]], name: str) -> Future[Opened[T]]:
    """Enter opener() on a thread of its own. Not a daemon: one still in OpenSSL or paramiko when Python shuts down
    crashes the process (SIGSEGV seen with an S3 endpoint whose certificate was refused); an exit waits for it
    instead, at most the connection's own timeout, which the backup itself waited for too."""
    future: Future[Opened[T]] = Future()

    def work() -> None:
        try:
            context = opener()
            future.set_result(Opened(context.__enter__(), context))
        except Exception as exc:  # noqa: BLE001 - told when the connection is used, if it is
            future.set_exception(exc)

    threading.Thread(target=work, name=name, daemon=False).start()
    return future


def _close(done: Future[Opened[T]]) -> None:
    if done.exception() is None:
        done.result().close()
