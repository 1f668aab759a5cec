"""What opsctl knows about each target and drill: from the run record, and from a look at the targets now.

The run record holds what every run learnt (newest snapshots, verified snapshots, check results,
key ages, locks). `opsctl status --offline` answers from it alone; the online form takes each
reachable target's own answer over the record, and keeps the record's for a target that did not
answer, so its row still shows what was last known and when.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from opsctl.audit import runs
from opsctl.audit.runs import CommandRun, TargetRun
from opsctl.policy.model import Policy
from opsctl.policy.model import Target as TargetConfig

MEDIA = {"local": "disk", "mount": "NAS", "sftp": "NAS", "s3": "object storage"}
LIVE_MEDIUM = "disk"  # the live database's own copy: on its server's disk
# The run record's commands that learn what a target holds, and what they learn.
HOLDINGS = ("backup", "status", "keys status")
VERIFYING = ("verify", "drill", "restore")  # a verified restore proves its snapshot too


@dataclass(frozen=True)
class Look:
    """What one target answered just now (online status)."""

    reachable: bool
    error: str | None = None
    hint: str | None = None
    snapshots: int | None = None
    newest: Mapping[str, datetime] = field(default_factory=dict)  # database -> its newest snapshot's time
    newest_id: str | None = None
    key_created: datetime | None = None
    locked: bool | None = None
    lock_detail: str | None = None
    lock_hint: str | None = None
    locked_until: datetime | None = None


@dataclass(frozen=True)
class Outcome:
    """How a command last ended on a target: when, and the error if it failed."""

    ok: bool
    at: datetime
    error: str | None = None
    detail: str | None = None


@dataclass(frozen=True)
class TargetState:
    """One target as status sees it."""

    name: str
    location: str
    kind: str
    media: str
    offsite: bool
    offline: bool  # declared: kept disconnected between backups
    reachable: bool | None  # None: not asked (--offline)
    error: str | None = None
    hint: str | None = None
    snapshots: int | None = None
    newest: Mapping[str, datetime] = field(default_factory=dict)
    verified: Mapping[str, datetime] = field(default_factory=dict)
    verification: Outcome | None = None
    check: Outcome | None = None
    key_created: datetime | None = None
    locked: bool | None = None  # None: never read (storage without a lock reads as False)
    lock_detail: str | None = None
    lock_hint: str | None = None
    locked_until: datetime | None = None

    def holds_all(self, databases: Iterable[str]) -> bool:
        """A copy: it holds a snapshot of every database of the policy."""
        return all(name in self.newest for name in databases)

    @property
    def unknown(self) -> bool:
        """Asked and did not answer: what it holds now is not known."""
        return self.reachable is False


@dataclass(frozen=True)
class DrillState:
    """The last drill, as the run record has it."""

    ok: bool
    at: datetime
    target: str | None
    rto_s: float | None
    rpo_s: float | None
    error: str | None


@dataclass(frozen=True)
class Picture:
    """Everything the rules look at."""

    policy: Policy
    now: datetime
    online: bool
    targets: tuple[TargetState, ...]
    drill: DrillState | None

    @property
    def databases(self) -> tuple[str, ...]:
        return self.policy.database.names


def picture(policy: Policy, state_dir: Path, now: datetime, looks: Mapping[str, Look] | None) -> Picture:
    """The picture from the run record, with each answering target's look taking precedence (None: --offline)."""
    records = {command: runs.read(state_dir, command) for command in (*HOLDINGS, *VERIFYING, "check")}
    targets = tuple(_target(config, records, None if looks is None else looks.get(config.name))
                    for config in policy.targets)
    return Picture(policy, now, looks is not None, targets, _drill(records.get("drill")))


def _target(config: TargetConfig, records: Mapping[str, CommandRun | None], look: Look | None) -> TargetState:
    kept = {command: record.target(config.name) if record else None for command, record in records.items()}
    state = TargetState(
        name=config.name, location=_location(config.name, kept), kind=config.kind, media=MEDIA[config.kind],
        offsite=config.offsite, offline=config.offline, reachable=None if look is None else look.reachable,
        newest=_newest(kept[c] for c in HOLDINGS), verified=_newest((kept[c] for c in VERIFYING), "verified:"),
        verification=_last(kept[c] for c in VERIFYING), check=_last([kept["check"]]),
        snapshots=_int(_fact(kept["status"], "snapshots")),
        key_created=_newest_time(_fact(kept[c], "key_created") for c in ("status", "keys status")),
        locked=_bool(_fact(kept["status"], "locked")), lock_detail=_str(_fact(kept["status"], "lock_detail")),
        lock_hint=_str(_fact(kept["status"], "lock_hint")),
        locked_until=_time(_fact(kept["status"], "locked_until")))
    if look is None or not look.reachable:
        return state if look is None else _unanswered(state, look)
    return _answered(state, look)


def _answered(state: TargetState, look: Look) -> TargetState:
    return replace(state, reachable=True, snapshots=look.snapshots, newest=look.newest,
                   key_created=look.key_created or state.key_created, locked=look.locked,
                   lock_detail=look.lock_detail, lock_hint=look.lock_hint, locked_until=look.locked_until)


def _unanswered(state: TargetState, look: Look) -> TargetState:
    return replace(state, reachable=False, error=look.error, hint=look.hint)


def _location(name: str, kept: Mapping[str, TargetRun | None]) -> str:
    return next((run.location for run in kept.values() if run is not None and run.location), name)


def _newest(kept: Iterable[TargetRun | None], prefix: str = "snapshot:") -> dict[str, datetime]:
    """Per database, the newest time any of these records states under prefix (snapshot: or verified:)."""
    newest: dict[str, datetime] = {}
    for run in kept:
        for key, value in (run.facts if run else {}).items():
            moment = _time(value)
            if key.startswith(prefix) and moment is not None:
                database = key.removeprefix(prefix)
                newest[database] = max(moment, newest.get(database, moment))
    return newest


def _last(kept: Iterable[TargetRun | None]) -> Outcome | None:
    """The newest of these outcomes (a verification: verify, drill, restore; or a check)."""
    ended = [(moment, run) for run in kept if run is not None and (moment := _time(run.finished_at)) is not None]
    if not ended:
        return None
    moment, run = max(ended, key=lambda pair: pair[0])
    return Outcome(run.ok, moment, run.error, _str(run.facts.get("read_data_subset")))


def _drill(record: CommandRun | None) -> DrillState | None:
    moment = _time(record.finished_at) if record else None
    if record is None or moment is None:
        return None
    target = record.targets[0] if record.targets else None
    facts = target.facts if target else {}
    return DrillState(record.outcome == "ok", moment, target.target if target else None,
                      _float(facts.get("rto_s")), _float(facts.get("rpo_s")), record.error)


def _fact(run: TargetRun | None, key: str) -> object:
    return None if run is None else run.facts.get(key)


def _newest_time(values: Iterable[object]) -> datetime | None:
    times = [moment for value in values if (moment := _time(value)) is not None]
    return max(times) if times else None


def _time(value: object) -> datetime | None:
    """An ISO time from the record; anything else (the record is a file) is no time."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _bool(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None
