"""The audit trail's copy on every target: added after each job, read back by `audit verify --against`.

Runs as a subscriber after the trail's own line is written, so a job's copy includes its own
entry. A target that cannot be reached is skipped with a warning; the next job copies what it
lacks, because what a target holds is read from its listing, not from a note kept here.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
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
from opsctl.targets.replicate import audit_copy_name, listed_names

log = logging.getLogger(__name__)
# The commands that reach the targets anyway: each ends by bringing the targets' copies up to date.
JOBS = frozenset({"init", "backup", "prune", "check", "verify", "drill", "keys rotate"})
_RANGE = re.compile(r"(\d{10})-(\d{10})\.jsonl")


class AuditCopies:
    """Subscriber: after a job, each target it reached gets the trail's entries it does not hold yet."""

    def started(self, run: Run) -> None:
        pass

    def finished(self, run: Run, outcome: Outcome) -> None:
        failed = {r.target for r in outcome.target_results() if not r.ok}
        self._copy(run, skip=failed)

    def failed(self, run: Run, problem: Problem, word: str) -> None:  # noqa: ARG002 - the protocol's
        if word not in ("refused", "busy", "skipped"):  # those never reached a target
            self._copy(run, skip=set())

    @staticmethod
    def _copy(run: Run, skip: set[str]) -> None:
        if run.command in JOBS and run.settings is not None:
            copy_to_targets(run.settings, audit.trail_path(run.state_dir), skip)


def copy_to_targets(policy: Policy, trail: Path, skip: set[str] | None = None) -> None:
    """Add to each target the links it lacks, at once; a target that fails is a warning, never the job's failure."""
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
    configs = [c for c in policy.targets if c.name not in (skip or set())]
    with ThreadPoolExecutor(max_workers=max(1, len(configs))) as pool:
        for config, error in zip(configs, pool.map(lambda c: _copy_quietly(policy, c, checked), configs),
                                 strict=True):
            if error is not None:
                log.warning("the audit trail's copy on %s was not brought up to date (%s); the next job does it",
                            config.name, error)


def _copy_quietly(policy: Policy, config: TargetConfig, checked: chain.ChainCheck) -> str | None:
    try:
        with _target(policy, config).files() as files:
            _copy_to(files, checked.chain_id or "", checked.links)
    except (OpsctlError, OSError) as exc:
        return str(exc) if isinstance(exc, OpsctlError) else (exc.strerror or exc.__class__.__name__)
    except Exception as exc:  # noqa: BLE001 - a client library's own error (boto3, paramiko): the next job retries
        return exc.__class__.__name__
    return None


def _copy_to(files: RepositoryFiles, chain_id: str, links: Sequence[Link]) -> None:
    newest = max((last for _first, last in _batches(files, chain_id)), default=-1)
    new = [link for link in links if link.seq > newest]
    if new:
        files.write_new(offsite.batch_name(chain_id, new[0].seq, new[-1].seq), offsite.encode(chain_id, new))


def _batches(files: RepositoryFiles, chain_id: str) -> list[tuple[int, int]]:
    """The (first, last) entry ranges of the batch files a target lists for this chain."""
    ranges = []
    for name in listed_names(files, offsite.chain_folder(chain_id)):
        match = _RANGE.fullmatch(name.rpartition("/")[2])
        if match is not None and audit_copy_name(name):
            ranges.append((int(match.group(1)), int(match.group(2))))
    return ranges


def held_links(files: RepositoryFiles, chain_id: str) -> list[Link]:
    """Every link a target holds for this chain; DamagedCopy names a file there that is not a batch."""
    links = []
    for name in sorted(listed_names(files, offsite.chain_folder(chain_id))):
        if not audit_copy_name(name):
            raise offsite.DamagedCopy(f"{name} is not a file opsctl writes there")
        try:
            links.extend(offsite.decode(files.read(name), chain_id))
        except offsite.DamagedCopy as exc:
            raise offsite.DamagedCopy(f"{name}: {exc}") from None
    return links


def _target(policy: Policy, config: TargetConfig) -> Target:
    return target_for(config, policy.stall_timeout.total_seconds())
