"""The audit trail's copy on every target: added after each job, read back by `audit verify --against`.

Runs as a subscriber after the trail's own line is written, so a job's copy includes its own
entry. A target that cannot be reached is skipped with a warning; the next job copies what it
lacks, because what a target holds is read from its listing, not from a note kept here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path

from opsctl import audit
from opsctl.actions.early import AfterJob
from opsctl.actions.events import Run
from opsctl.audit import chain, offsite
from opsctl.audit.chain import Link
from opsctl.policy.model import Policy
from opsctl.policy.model import Target as TargetConfig
from opsctl.targets import RepositoryFiles, target_for
from opsctl.targets.errors import HostileTarget
from opsctl.targets.replicate import audit_copy_name, listed_names

log = logging.getLogger(__name__)


class AuditCopies(AfterJob[RepositoryFiles]):
    """Subscriber: after a job, each target it reached gets the trail's entries it does not hold yet (early.py says
    how). No deadline: the copies are what keeps a rewritten trail from going unnoticed."""

    name = "audit-copy"

    def _open(self, policy: Policy, config: TargetConfig) -> AbstractContextManager[RepositoryFiles]:
        return target_for(config, policy.stall_timeout.total_seconds()).files()

    def _after(self, run: Run, policy: Policy, configs: list[TargetConfig]) -> None:
        copy_to_targets(self, policy, audit.trail_path(run.state_dir), configs)


def copy_to_targets(copies: AfterJob[RepositoryFiles], policy: Policy, trail: Path,
                    configs: list[TargetConfig]) -> None:
    """Add to each target the links it lacks, at once; a failure is a warning, never the job's failure."""
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
    errors = copies.each(policy, configs, lambda files: _copy_to(files, checked.chain_id or "", checked.links,
                                                                 policy.name))
    for name, error in errors.items():
        log.warning("the audit trail's copy on %s was not brought up to date (%s); the next job does it", name, error)


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

