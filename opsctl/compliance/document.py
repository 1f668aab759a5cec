"""The compliance document: what `status --json` prints and the auditor's page seals.

Only what opsctl itself knows goes in: names, times, verdicts and its own messages. No row
contents, no secrets, no credentials (target locations are the redacted display names).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from opsctl.compliance.picture import Outcome, Picture, TargetState
from opsctl.compliance.rules import RuleVerdict, Status

FORMAT = "opsctl-compliance/1"


def content(picture: Picture, verdicts: tuple[RuleVerdict, ...], verdict: Status,
            check_cycles: dict[str, str]) -> dict[str, Any]:
    """The whole answer as JSON types; check_cycles: per target, how much of it this check cycle has read."""
    policy = picture.policy
    return {
        "format": FORMAT, "policy": policy.name, "verdict": verdict, "summary": summary(verdicts, verdict),
        "mode": "online" if picture.online else "offline", "checked_at": iso(picture.now),
        "databases": list(picture.databases),
        "objectives": {"rpo_s": policy.objectives.rpo.total_seconds(),
                       "max_key_age_s": policy.max_key_age.total_seconds(),
                       "drill_max_age_s": policy.compliance.drill_max_age.total_seconds()},
        "rules": [{"rule": v.rule, "required": v.required, "status": v.status, "reason": v.reason, "todo": v.todo}
                  for v in verdicts],
        "targets": [_target(picture, t, check_cycles.get(t.name)) for t in picture.targets],
        "drill": None if picture.drill is None else {
            "ok": picture.drill.ok, "at": iso(picture.drill.at), "age_s": _age(picture, picture.drill.at),
            "target": picture.drill.target, "rto_s": picture.drill.rto_s, "rpo_s": picture.drill.rpo_s,
            "error": picture.drill.error},
    }


def summary(verdicts: tuple[RuleVerdict, ...], verdict: Status) -> str:
    """One sentence: which required rules hold, and the first that does not."""
    required = [v for v in verdicts if v.required]
    names = ", ".join(v.rule for v in required)
    if verdict == "PASS":
        return f"Protected as the policy requires: {names} pass."
    first = next(v for v in required if v.status == verdict)
    word = "fails" if verdict == "FAIL" else "is unknown"
    return f"Not proven protected: {first.rule} {word} ({first.reason})."


def _target(picture: Picture, t: TargetState, check_cycle: str | None) -> dict[str, Any]:
    newest = min(t.newest.values()) if t.holds_all(picture.databases) and t.newest else None
    verified = min(t.verified.values()) if all(d in t.verified for d in picture.databases) and t.verified else None
    return {
        "target": t.name, "location": t.location, "kind": t.kind, "media": t.media, "offsite": t.offsite,
        "offline": t.offline, "reachable": t.reachable, "error": t.error, "hint": t.hint, "snapshots": t.snapshots,
        "newest_snapshot_at": iso(newest), "newest_snapshot_age_s": _age(picture, newest),
        "newest_verified_at": iso(verified), "newest_verified_age_s": _age(picture, verified),
        "databases": {name: {"newest_snapshot_at": iso(t.newest.get(name)),
                             "newest_verified_at": iso(t.verified.get(name))} for name in picture.databases},
        "last_verification": _outcome(picture, t.verification),
        "last_check": _outcome(picture, t.check, cycle=check_cycle),
        "immutable": t.locked, "lock": t.lock_detail, "lock_hint": t.lock_hint,
        "locked_until": iso(t.locked_until),
        "key_created": iso(t.key_created), "key_age_s": _age(picture, t.key_created),
    }


def _outcome(picture: Picture, outcome: Outcome | None, **more: str | None) -> dict[str, Any] | None:
    if outcome is None:
        return None
    return {"ok": outcome.ok, "at": iso(outcome.at), "age_s": _age(picture, outcome.at), "error": outcome.error,
            "read": outcome.detail, **more}


def iso(moment: datetime | None) -> str | None:
    """A time as the run record and the document write it: ISO 8601, to the second."""
    return None if moment is None else moment.isoformat(timespec="seconds")


def _age(picture: Picture, moment: datetime | None) -> float | None:
    return None if moment is None else round(max(0.0, (picture.now - moment).total_seconds()), 1)
