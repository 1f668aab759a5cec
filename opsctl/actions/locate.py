"""Which target to restore from: the nearest healthy one that holds the wanted snapshot."""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from opsctl.actions.context import Session, as_operator_error
from opsctl.actions.recovery import pick_snapshot
from opsctl.errors import OpsctlError
from opsctl.policy.model import Target as TargetConfig
from opsctl.restic import Repository
from opsctl.restic.errors import ResticError, SnapshotNotFound
from opsctl.restic.models import Snapshot
from opsctl.sources import Source
from opsctl.targets import Target

_KIND_DISTANCE = {"local": 0, "mount": 1, "sftp": 2, "s3": 3}
GRACE_S = 15.0
"""Once one target has answered, how long the farther ones get to say they hold something newer."""


@dataclass(frozen=True)
class Located:
    """A snapshot on a target, why that target was chosen, and what the others said."""

    target: Target
    repository: Repository
    snapshot: Snapshot
    reason: str
    others: tuple[str, ...] = ()
    size_bytes: int | None = None


def nearness(config: TargetConfig) -> tuple[bool, int]:
    """On-site before off-site, then local disk, mounted share, SFTP, S3: the order restores are fastest in."""
    return config.offsite, _KIND_DISTANCE.get(config.kind, 9)


def locate_on(session: Session, source: Source, target: Target, wanted: str, at: datetime | None) -> Located:
    """The wanted snapshot on one given target. restic asks first; the target's own check runs only to
    explain a failure (on S3 it costs half a second of client start-up)."""
    repo = session.repository(target)
    try:
        snapshot, size = _find(session, source, repo, wanted, at)
    except SnapshotNotFound:
        raise
    except ResticError:
        target.probe()  # a missing bucket, a refused key or an unmounted disk is named better by the target
        raise
    return Located(target, repo, snapshot, "chosen with --target", size_bytes=size)


def _find(session: Session, source: Source, repo: Repository, wanted: str,
          at: datetime | None) -> tuple[Snapshot, int | None]:
    tags = session.snapshot_tags(source)
    if wanted == "latest" and at is None:  # the common case: snapshot and size in one call
        snapshot, size = session.restic.latest_with_size(repo, tags, "/" + source.file_name)
        if snapshot is None:
            raise SnapshotNotFound("there are no snapshots of this database on that target yet", "run: opsctl backup")
        return snapshot, size
    return pick_snapshot(session.restic.snapshots(repo, tags), wanted, at), None


def locate(session: Session, source: Source, wanted: str, at: datetime | None) -> Located:
    """Ask every target at once; take the newest matching snapshot, from the nearest target that holds it."""
    configs = sorted(session.target_configs(), key=nearness)
    session.read_secrets(database=False)  # once, here: a password command must not run once per thread
    answers: queue.Queue[_Answer] = queue.Queue()
    for config in configs:  # daemon threads: a hung NAS must not hold a 3 a.m. restore
        ask = partial(_ask, session, source, config, wanted=wanted, at=at, answers=answers)
        threading.Thread(target=ask, daemon=True).start()
    found, failed = _collect(answers, len(configs), session.policy.stall_timeout.total_seconds())
    late = OpsctlError("did not answer in time")
    failed.update({c.name: late for c in configs if c.name not in found and c.name not in failed})
    if not found:
        _none_can_restore(failed)
    rank = {config.name: index for index, config in enumerate(configs)}
    best = min(found.values(), key=lambda located: (-located.snapshot.time.timestamp(), rank[located.target.name]))
    return Located(best.target, best.repository, best.snapshot, _reason(best, found, configs),
                   tuple(f"{name}: {error.message}" for name, error in failed.items()), best.size_bytes)


def _none_can_restore(failed: dict[str, OpsctlError]) -> None:
    errors = list(failed.values())
    if all(isinstance(error, SnapshotNotFound) for error in errors):  # the request, not the targets, is wrong
        raise SnapshotNotFound(f"{errors[0].message} (on any target)", errors[0].hint)
    problems = "; ".join(f"{name}: {error.message}" for name, error in failed.items())
    raise OpsctlError(f"no target can restore this: {problems}",
                      "bring a target back (disk, mount, network or credentials), or pick another snapshot")


_Answer = tuple[str, Located | OpsctlError]


def _ask(session: Session, source: Source, config: TargetConfig, *, wanted: str, at: datetime | None,
         answers: queue.Queue[_Answer]) -> None:
    try:
        answers.put((config.name, locate_on(session, source, session.target(config), wanted, at)))
    except BaseException as exc:  # noqa: BLE001 - every failure is an answer: the restore goes on from another target
        answers.put((config.name, as_operator_error(exc, config.name)))


def _collect(answers: queue.Queue[_Answer], count: int,
             limit_s: float) -> tuple[dict[str, Located], dict[str, OpsctlError]]:
    found: dict[str, Located] = {}
    failed: dict[str, OpsctlError] = {}
    deadline = time.monotonic() + limit_s
    while len(found) + len(failed) < count:
        try:
            name, answer = answers.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        if isinstance(answer, Located):
            if not found:
                deadline = min(deadline, time.monotonic() + GRACE_S)
            found[name] = answer
        else:
            failed[name] = answer
    return found, failed


def _reason(best: Located, found: dict[str, Located], configs: list[TargetConfig]) -> str:
    nearest = next(config.name for config in configs if config.name in found)
    if best.target.name == nearest:
        return "the nearest target that answered"
    newer = found[nearest].snapshot
    return (f"it holds a newer snapshot than {nearest} (whose newest match is {newer.short_id}, "
            f"{newer.time:%Y-%m-%d %H:%M:%S} UTC)")


def first_reachable_target(session: Session, name: str | None) -> Target:
    """The named target, or the first one in the policy that answers (the others may be down)."""
    if name is not None:
        return session.target(session.target_configs(name)[0])
    problems: list[str] = []
    for config in session.policy.targets:
        target = session.target(config)
        try:
            target.probe()
        except OpsctlError as exc:
            problems.append(exc.message)
        else:
            return target
    raise OpsctlError("no target of the policy can be reached: " + "; ".join(problems),
                      "bring one back (or fix its mount, network or credentials), then run the command again")
