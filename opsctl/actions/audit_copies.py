"""The audit trail's copy on every target: added after each job, read back by `audit verify --against`.

Runs as a subscriber after the trail's own line is written, so a job's copy includes its own
entry. A target that cannot be reached is skipped with a warning; the next job copies what it
lacks, because what a target holds is read from its listing, not from a note kept here.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass
from pathlib import Path

from opsctl import audit
from opsctl.actions.events import Run
from opsctl.actions.outcome import Outcome, Problem
from opsctl.audit import chain, offsite
from opsctl.audit.chain import Link
from opsctl.errors import OpsctlError
from opsctl.policy.model import Policy
from opsctl.policy.model import Target as TargetConfig
from opsctl.targets import RepositoryFiles, Target, target_for
from opsctl.targets.errors import HostileTarget
from opsctl.targets.replicate import audit_copy_name, listed_names

log = logging.getLogger(__name__)
# The commands that reach the targets anyway: each ends by bringing the targets' copies up to date.
JOBS = frozenset({"init", "backup", "prune", "check", "verify", "drill", "restore", "keys rotate"})


class AuditCopies:
    """Subscriber: after a job, each target it reached gets the trail's entries it does not hold yet.

    For a backup the connections are opened when it starts, alongside its own work, so that logging
    in to a NAS or a bucket adds no time after it; one that failed or dropped meanwhile is opened
    again. A job that stopped part-way copies nothing: the next one copies what it left.
    """

    def __init__(self) -> None:
        self._opening: dict[str, Future[_Opened]] = {}

    def started(self, run: Run) -> None:
        if run.command == "backup" and run.settings is not None:
            self._opening = {c.name: _open_early(run.settings, c) for c in run.settings.targets}

    def finished(self, run: Run, outcome: Outcome) -> None:
        try:
            if run.command in JOBS and run.settings is not None:
                results = outcome.target_results()
                reached = {r.target for r in results if r.ok} if results else {t.name for t in run.settings.targets}
                copy_to_targets(run.settings, audit.trail_path(run.state_dir), reached, self._opening)
        finally:
            self._close()

    def failed(self, run: Run, problem: Problem, word: str) -> None:  # noqa: ARG002 - the protocol's
        self._close()

    def _close(self) -> None:
        for opening in self._opening.values():
            opening.add_done_callback(_close_opened)
        self._opening = {}


def _open_early(policy: Policy, config: TargetConfig) -> Future[_Opened]:
    """Open a target's files on a thread of its own. Not a daemon: one still in OpenSSL or paramiko when Python
    shuts down crashes the process (SIGSEGV seen with an S3 endpoint whose certificate was refused); an exit
    waits for it instead, at most the connection's own timeout, which the backup itself waited for too."""
    future: Future[_Opened] = Future()

    def work() -> None:
        try:
            future.set_result(_Opened.open(policy, config))
        except Exception as exc:  # noqa: BLE001 - told when the copy is made, if this target is reached
            future.set_exception(exc)

    threading.Thread(target=work, name=f"audit-copy-{config.name}", daemon=False).start()
    return future


@dataclass(frozen=True)
class _Opened:
    """A target's files, open until closed (a connection opened on one thread may be used and closed on another)."""

    files: RepositoryFiles
    context: AbstractContextManager[RepositoryFiles]

    @classmethod
    def open(cls, policy: Policy, config: TargetConfig) -> _Opened:
        context = _target(policy, config).files()
        return cls(context.__enter__(), context)

    def close(self) -> None:
        with suppress(Exception):  # closing a dropped connection: nothing left to keep
            self.context.__exit__(None, None, None)


def _close_opened(done: Future[_Opened]) -> None:
    if done.exception() is None:
        done.result().close()


def copy_to_targets(policy: Policy, trail: Path, reached: set[str],
                    opening: dict[str, Future[_Opened]] | None = None) -> None:
    """Add to each target reached the links it lacks, at once; a failure is a warning, never the job's failure."""
    try:
        checked = chain.check(trail)
    except OSError as exc:
        log.warning("the audit trail %s could not be read to copy it to the targets (%s)", trail, exc.strerror)
        return
    if checked.chain_id is None or not checked.links:
        return
    if not checked.intact:  # what the chain still vouches for is copied; the rest is audit verify's to report
        log.warning("the audit trail is damaged (%s); only the entries before that were copied to the targets; "
                    "run: opsctl audit verify", checked.problem)
    configs = [c for c in policy.targets if c.name in reached]
    with ThreadPoolExecutor(max_workers=max(1, len(configs))) as pool:
        errors = pool.map(lambda c: _copy_quietly(policy, c, checked, (opening or {}).get(c.name)), configs)
        for config, error in zip(configs, errors, strict=True):
            if error is not None:
                log.warning("the audit trail's copy on %s was not brought up to date (%s); the next job does it",
                            config.name, error)


def _copy_quietly(policy: Policy, config: TargetConfig, checked: chain.ChainCheck,
                  opening: Future[_Opened] | None) -> str | None:
    """Copy over the connection opened early when it works, else over a new one (the job reached this target)."""
    if opening is not None:
        with suppress(Exception):  # it could not open at the start (init made the folder since) or dropped
            _copy_to(opening.result(timeout=policy.stall_timeout.total_seconds()).files, checked.chain_id or "",
                     checked.links, policy.name)
            return None
    try:
        with _target(policy, config).files() as files:
            _copy_to(files, checked.chain_id or "", checked.links, policy.name)
    except Exception as exc:  # noqa: BLE001 - a client library's own error (boto3, paramiko): the next job retries
        return _said(exc)
    return None


def _said(exc: BaseException) -> str:
    """What to say about a failed copy: opsctl's own message, else only the error's kind (never a library's text)."""
    if isinstance(exc, OpsctlError):
        return str(exc)
    return (exc.strerror if isinstance(exc, OSError) else None) or exc.__class__.__name__


def _copy_to(files: RepositoryFiles, chain_id: str, links: Sequence[Link], policy: str) -> None:
    if not files.exists("config"):  # no repository (yet): a folder init will be asked to fill stays untouched
        return
    newest = _newest_held(files, chain_id)
    new = [link for link in links if link.seq > newest]
    if new:
        files.write_new(offsite.batch_name(chain_id, new[0].seq, new[-1].seq), offsite.encode(chain_id, new, policy))


_TRIES = 3  # batches read back to find the newest true one; more bad ones mean someone is planting files


def _newest_held(files: RepositoryFiles, chain_id: str) -> int:
    """The last entry of the newest batch that holds what its name says: a planted name must not stop the copies."""
    for first, last, name in sorted(_batches(files, chain_id), key=lambda batch: batch[1], reverse=True)[:_TRIES]:
        try:
            offsite.decode(files.read(name), chain_id, first, last)
        except (offsite.DamagedCopy, HostileTarget) as exc:
            log.warning("%s on a target is not a copy opsctl wrote (%s): passed over; opsctl audit verify "
                        "--against that target reports it", name, exc)
            continue
        return last
    return -1


def _batches(files: RepositoryFiles, chain_id: str) -> list[tuple[int, int, str]]:
    """The (first, last, name) of the batch files a target lists for this chain."""
    ranges = []
    for name in listed_names(files, offsite.chain_folder(chain_id)):
        claimed = offsite.batch_range(name)
        if claimed is not None and audit_copy_name(name):
            ranges.append((*claimed, name))
    return ranges


def held_links(files: RepositoryFiles, chain_id: str) -> list[Link]:
    """Every link a target holds for this chain; DamagedCopy names a file there that is not a batch."""
    links = []
    for name in sorted(listed_names(files, offsite.chain_folder(chain_id))):
        claimed = offsite.batch_range(name)
        if claimed is None or not audit_copy_name(name):
            raise offsite.DamagedCopy(f"{name} is not a file opsctl writes there")
        try:
            links.extend(offsite.decode(files.read(name), chain_id, *claimed))
        except offsite.DamagedCopy as exc:
            raise offsite.DamagedCopy(f"{name}: {exc}") from None
    return links


def other_chains(files: RepositoryFiles, chain_id: str, policy: str) -> list[str]:
    """Other chains of this policy whose copies a target holds (each by its 16-digit name); another policy
    sharing the repository keeps its own chain there, and is none of this one's business."""
    batches: dict[str, str] = {}
    for name in sorted(listed_names(files, offsite.FOLDER)):
        parts = name.split("/")
        if len(parts) == len(("opsctl-audit", "chain", "batch")) and parts[1] != chain_id[:16]:
            batches.setdefault(parts[1], name)
    return [chain for chain, name in batches.items() if offsite.policy_of(files.read(name)) in (policy, None)]


def _target(policy: Policy, config: TargetConfig) -> Target:
    return target_for(config, policy.stall_timeout.total_seconds())
