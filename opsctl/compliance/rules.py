"""The protection rules `opsctl status` checks, each PASS, FAIL or UNKNOWN with a reason and what to do.

UNKNOWN means the answer depends on a target that did not answer: with it the rule could hold,
without it not. A rule never passes on a guess.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from opsctl.compliance.picture import LIVE_MEDIUM, Picture, TargetState
from opsctl.policy.compliance import RULES
from opsctl.policy.durations import format_duration, human_duration

Status = Literal["PASS", "FAIL", "UNKNOWN"]
PASS: Status = "PASS"  # noqa: S105 - a verdict, not a password
FAIL: Status = "FAIL"
UNKNOWN: Status = "UNKNOWN"
_BACKUP_COPIES = 2  # 3 copies: the live database and two backups
_MEDIA = 2


@dataclass(frozen=True)
class Finding:
    """A rule's answer: its status, why, and what to do when it is not PASS."""

    status: Status
    reason: str
    todo: str | None = None


@dataclass(frozen=True)
class RuleVerdict:
    rule: str
    required: bool
    status: Status
    reason: str
    todo: str | None = None


def evaluate(picture: Picture) -> tuple[RuleVerdict, ...]:
    """Every rule, in a fixed order; the policy's compliance.rules are the required ones."""
    required = picture.policy.compliance.rules
    return tuple(RuleVerdict(rule, rule in required, *_as_tuple(_CHECKS[rule](picture))) for rule in RULES)


def verdict(verdicts: Sequence[RuleVerdict]) -> Status:
    """FAIL when a required rule fails, else UNKNOWN when one is unknown, else PASS."""
    statuses = {v.status for v in verdicts if v.required}
    return FAIL if FAIL in statuses else UNKNOWN if UNKNOWN in statuses else PASS


def _as_tuple(finding: Finding) -> tuple[Status, str, str | None]:
    return finding.status, finding.reason, finding.todo


def three_two_one(p: Picture) -> Finding:
    """3 copies (the live database is one), on 2 kinds of media, 1 of them off-site."""
    held = [t for t in p.targets if not t.unknown and t.holds_all(p.databases)]
    silent = [t for t in p.targets if t.unknown and t.holds_all(p.databases)]  # held them when last known
    shortfall = _shortfall(held)
    reason = _copies_text(held)
    if not shortfall:
        return Finding(PASS, reason)
    if not _shortfall(held + silent):
        names = ", ".join(t.name for t in silent)
        return Finding(UNKNOWN, f"{reason}; {names} did not answer", f"find out why {names} cannot be reached "
                                                                     "(opsctl doctor)")
    return Finding(FAIL, f"{reason}: {shortfall[0][0]}", shortfall[0][1])


def _shortfall(held: Sequence[TargetState]) -> list[tuple[str, str]]:
    """What the copies lack, with what to do; empty when 3-2-1 holds."""
    lacks = []
    if len(held) < _BACKUP_COPIES:
        lacks.append(("fewer than 3 copies", ("run opsctl backup; if the policy has fewer than two targets, add one "
                                             "(a NAS or an S3 bucket)")))
    if len({LIVE_MEDIUM, *(t.media for t in held)}) < _MEDIA:
        lacks.append(("all copies on one kind of media", ("keep one copy on other media: a NAS (sftp, mount) or "
                                                         "object storage (s3)")))
    if not any(t.offsite for t in held):
        lacks.append(("no copy off-site", ("add a target away from this site (S3, a remote NAS) and mark it "
                                          "offsite: true")))
    return lacks


def _copies_text(held: Sequence[TargetState]) -> str:
    media = sorted({LIVE_MEDIUM, *(t.media for t in held)})
    offsite = [t.name for t in held if t.offsite]
    names = "".join(f", {t.name}" for t in held)
    copies, kinds = 1 + len(held), len(media)
    where = f" ({', '.join(offsite)})" if offsite else ""
    return (f"{copies} {'copy' if copies == 1 else 'copies'} (live database{names}), {kinds} "
            f"{'kind' if kinds == 1 else 'kinds'} of media ({', '.join(media)}), {len(offsite)} off-site{where}")


def three_two_one_one_zero(p: Picture) -> Finding:
    """3-2-1, plus 1 immutable or offline copy, plus 0 errors in every target's newest verification."""
    findings = [three_two_one(p), _immutable_copy(p), _zero_errors(p)]
    worst = FAIL if any(f.status == FAIL for f in findings) else UNKNOWN if any(
        f.status == UNKNOWN for f in findings) else PASS
    reason = "; ".join(f.reason for f in findings)
    todo = next((f.todo for f in findings if f.status == worst and f.todo), None)
    return Finding(worst, reason, None if worst == PASS else todo)


def _immutable_copy(p: Picture) -> Finding:
    held = [t for t in p.targets if not t.unknown and t.holds_all(p.databases)]
    kept = [t for t in held if t.offline or _locked_as_asked(p, t)]
    if kept:
        words = [f"{t.name} ({'offline' if t.offline else 'immutable'})" for t in kept]
        return Finding(PASS, f"1 immutable or offline copy: {', '.join(words)}")
    unread = [t for t in p.targets if t.kind == "s3" and t.holds_all(p.databases) and (t.locked is None or t.unknown)]
    if unread:
        return Finding(UNKNOWN, f"the lock of {', '.join(t.name for t in unread)} was not read",
                       "run opsctl status without --offline, with the target reachable")
    todo = next((t.lock_hint for t in held if t.lock_hint), None) or (
        "give an S3 target object_lock (mode and days) and run opsctl init, or keep a copy offline (offline: true)")
    ended = [t.name for t in held if t.locked and t.locked_until is not None and t.locked_until <= p.now]
    why = (f"the lock of the newest snapshot on {', '.join(ended)} has ended" if ended
           else "no immutable or offline copy")
    return Finding(FAIL, why, todo)


def _locked_as_asked(p: Picture, t: TargetState) -> bool:
    """Locked as the policy asks (no gap the target reported), with the newest snapshot still under its lock."""
    still = t.locked_until is None or t.locked_until > p.now
    return bool(t.locked) and not t.lock_hint and still


def _zero_errors(p: Picture) -> Finding:
    problems: list[tuple[str, str]] = []
    for t in p.targets:
        for database in p.databases:
            found = t.verifications.get(database)
            if found is None:
                problems.append((f"{_of(t.name, database, p)} was never verified",
                                 f"run opsctl verify --target {t.name}{_database_option(database, p)}"))
            elif not found.ok:
                problems.append(((f"the newest verification of {_of(t.name, database, p)} failed "
                                 f"({found.error or 'not proven'})"),
                                 ("read its report (opsctl report list) and act on it; then opsctl verify --target "
                                 f"{t.name}{_database_option(database, p)}")))
        if t.check is not None and not t.check.ok:
            problems.append((f"{t.name}'s last check found errors ({t.check.error or 'damaged'})",
                             "restore from another target meanwhile; see opsctl check's advice"))
    if problems:
        return Finding(FAIL, "; ".join(text for text, _ in problems), problems[0][1])
    return Finding(PASS, "0 errors in every target's newest verification")


def _of(target: str, database: str, p: Picture) -> str:
    return target if len(p.databases) == 1 else f"{database} on {target}"


def _database_option(database: str, p: Picture) -> str:
    return "" if len(p.databases) == 1 else f" --database {database}"


def rpo(p: Picture) -> Finding:
    """Every database's newest verified snapshot is younger than objectives.rpo."""
    limit, lines, findings = p.policy.objectives.rpo, [], []
    for database in p.databases:
        line, status = _rpo_of(p, database, limit)
        lines.append(line)
        findings.append(status)
    limit_text = f"objectives.rpo {format_duration(limit)}"
    if FAIL in findings:
        newest = _newest(t.newest.get(db) for t in p.targets for db in p.databases)
        return Finding(FAIL, f"{'; '.join(lines)}, more than {limit_text}", _rpo_todo(p.now, newest, limit))
    if UNKNOWN in findings:
        silent = ", ".join(t.name for t in p.targets if t.unknown)
        return Finding(UNKNOWN, f"{'; '.join(lines)}; only {silent}, which did not answer, held a recent one",
                       f"find out why {silent} cannot be reached (opsctl doctor)")
    return Finding(PASS, f"{'; '.join(lines)} (within {limit_text})")


def _rpo_of(p: Picture, database: str, limit: timedelta) -> tuple[str, Status]:
    """One database's line, and PASS (a target that answered holds a recent verified snapshot), UNKNOWN (only one
    that did not answer held one) or FAIL."""
    verified = _newest(t.verified.get(database) for t in p.targets if not t.unknown)
    if verified is not None and p.now - verified <= limit:
        return f"{database}: newest verified snapshot {human_duration((p.now - verified).total_seconds())} old", PASS
    silent = _newest(t.verified.get(database) for t in p.targets if t.unknown)
    line = (f"{database} has no verified snapshot yet" if verified is None else
            f"the newest verified snapshot of {database} is {human_duration((p.now - verified).total_seconds())} old")
    return line, UNKNOWN if silent is not None and p.now - silent <= limit else FAIL


def _rpo_todo(now: datetime, newest: datetime | None, limit: timedelta) -> str:
    if newest is not None and now - newest <= limit:
        age = human_duration((now - newest).total_seconds())
        return f"run opsctl verify: a newer snapshot ({age} old) is not verified yet"
    return "run opsctl backup, then opsctl verify; opsctl schedule status shows whether the jobs run"


def key_age(p: Picture) -> Finding:
    """opsctl's key on every target is younger than max_key_age."""
    limit = p.policy.max_key_age
    read = [t for t in p.targets if t.key_created is not None and not t.unknown]
    unread = [t.name for t in p.targets if t not in read]
    old = [(t.name, p.now - t.key_created) for t in read if t.key_created and p.now - t.key_created > limit]
    limit_text = f"max_key_age {format_duration(limit)}"
    if old:
        ages = ", ".join(f"{name} {human_duration(age.total_seconds())}" for name, age in old)
        return Finding(FAIL, f"opsctl's key is older than {limit_text}: {ages}", "run opsctl keys rotate")
    if unread:
        return Finding(UNKNOWN, f"the key age of {', '.join(unread)} is not known",
                       "run opsctl status (without --offline, the targets reachable) or opsctl keys status")
    oldest = max(p.now - t.key_created for t in read if t.key_created)
    return Finding(PASS, f"oldest key {human_duration(oldest.total_seconds())} old (within {limit_text})")


def drill(p: Picture) -> Finding:
    """The last drill passed, within compliance.drill_max_age."""
    limit = p.policy.compliance.drill_max_age
    last = p.drill
    limit_text = f"compliance.drill_max_age {format_duration(limit)}"
    if last is None:
        return Finding(FAIL, "no drill recorded on this machine", "run opsctl drill")
    age = human_duration((p.now - last.at).total_seconds())
    if not last.ok:
        return Finding(FAIL, f"the last drill ({age} ago) failed: {last.error or 'see its report'}",
                       "read its report (opsctl drill --history) and act on its advice; then run opsctl drill")
    if p.now - last.at > limit:
        return Finding(FAIL, f"the last passed drill was {age} ago, more than {limit_text}", "run opsctl drill")
    return Finding(PASS, f"the last drill passed {age} ago (within {limit_text})")


def _newest(times: Iterable[datetime | None]) -> datetime | None:
    found = [t for t in times if t is not None]
    return max(found) if found else None


_CHECKS: dict[str, Callable[[Picture], Finding]] = {
    "3-2-1": three_two_one, "3-2-1-1-0": three_two_one_one_zero, "rpo": rpo, "key-age": key_age, "drill": drill}
