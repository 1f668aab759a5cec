"""What opsctl knows about each target and drill: from the run record, and from a look at the targets now.

The run record holds what every run learnt (newest snapshots, verified snapshots, check results,
key ages, locks). `opsctl status --offline` answers from it alone; the online form takes each
reachable target's own answer over the record, and keeps the record's for a target that did not
answer, so its row still shows what was last known and when.

What a target holds is what the last backup or online status that worked there learnt (a failed
backup deletes nothing), or an answer that nothing of ours is there; it is unknown only when the
last online status could not reach it after that. A verified snapshot counts only on a target
known to hold that database still, and no time later than now (a clock that ran ahead once)
counts at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TypeVar

from opsctl.audit import runs
from opsctl.audit.runs import VERIFICATION_AT, VERIFICATION_OK, VERIFIED, CommandRun, TargetRun
from opsctl.policy.model import Policy
from opsctl.policy.model import Target as TargetConfig
from opsctl.targets import target_for

V = TypeVar("V")
MEDIA = {"local": "disk", "mount": "NAS", "sftp": "NAS", "s3": "object storage"}
LIVE_MEDIUM = "disk"  # the live database's own copy: on its server's disk
HOLDINGS = ("backup", "status")  # the runs that say what a target holds
# The runs that prove snapshots (a restore only when it verified).
PROVING = ("verify", "drill", "restore", "standby refresh")
VERIFYING = ("verify", "drill", "standby refresh")  # the runs whose failures count as verification errors
SKEW = timedelta(minutes=5)  # later than now by more than this: a clock that ran ahead, not a time


@dataclass(frozen=True)
class Look:
    """What one target answered just now (online status); reachable with an error: it answered "nothing here"."""

    reachable: bool
    error: str | None = None
    hint: str | None = None
    snapshots: int | None = None
    newest: Mapping[str, datetime] = field(default_factory=dict)  # database -> its newest snapshot's time
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
    unknown: bool = False  # what it holds now is not known: it did not answer when last asked
    error: str | None = None
    hint: str | None = None
    snapshots: int | None = None
    newest: Mapping[str, datetime] = field(default_factory=dict)
    verified: Mapping[str, datetime] = field(default_factory=dict)
    verifications: Mapping[str, Outcome] = field(default_factory=dict)  # database -> its newest verification
    check: Outcome | None = None
    key_created: datetime | None = None
    locked: bool | None = None  # None: not read (storage without a lock reads as False)
    lock_detail: str | None = None
    lock_hint: str | None = None
    locked_until: datetime | None = None

    def holds_all(self, databases: Iterable[str]) -> bool:
        """A copy: it holds a snapshot of every database of the policy."""
        return all(name in self.newest for name in databases)

    @property
    def verification(self) -> Outcome | None:
        """The target's newest verification, or a database's newest one that failed (a failure is not hidden)."""
        failed = [outcome for outcome in self.verifications.values() if not outcome.ok]
        found = failed or list(self.verifications.values())
        return max(found, key=lambda outcome: outcome.at) if found else None


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
    records = {command: runs.read(state_dir, command) for command in (*HOLDINGS, *PROVING, "keys status", "check")}
    reader = _Reader(now)
    databases = frozenset(policy.database.names)
    targets = tuple(_target(config, records, reader, None if looks is None else looks.get(config.name), databases)
                    for config in policy.targets)
    return Picture(policy, now, looks is not None, targets, _drill(records.get("drill"), reader))


def _target(config: TargetConfig, records: Mapping[str, CommandRun | None], reader: _Reader,
            look: Look | None, databases: frozenset[str]) -> TargetState:
    location = target_for(config).display
    kept = {command: _here(record, config.name, location) for command, record in records.items()}
    held = _holding([kept[c] for c in HOLDINGS], reader)
    lock = kept["status"].facts if kept["status"] else {}
    state = TargetState(
        name=config.name, location=location, kind=config.kind, media=MEDIA[config.kind], offsite=config.offsite,
        offline=config.offline, reachable=None, unknown=_silent_since(kept["status"], held, reader, config.offline),
        newest=_only(reader.times(held.facts if held else {}, runs.SNAPSHOT), databases),
        snapshots=_int(held.facts.get("snapshots")) if held else None,
        verifications=_only(reader.verifications(kept[c] for c in VERIFYING), databases),
        check=_damage(reader.last(kept["check"]), kept["check"]),
        key_created=reader.newest(reader.time(_fact(kept[c], "key_created")) for c in ("status", "keys status")),
        locked=_bool(lock.get("locked")), lock_detail=_str(lock.get("lock_detail")),
        lock_hint=_str(lock.get("lock_hint")), locked_until=reader.time(lock.get("locked_until"), ahead=True))
    if look is not None:  # a detached offline copy may answer "nothing here": its mount point is empty
        answered = look.reachable and not (config.offline and look.error)
        state = _answered(state, look) if answered else _unanswered(state, look, config.offline)
    state = replace(state, newest=_only(state.newest, databases))
    return replace(state, verified=_only(_proven(state, (kept[c] for c in PROVING), reader), databases))


def _here(record: CommandRun | None, name: str, location: str) -> TargetRun | None:
    """The record's run on the target, unless it was made when the target was somewhere else."""
    run = record.target(name) if record else None
    return run if run is not None and run.location == location else None


def _holding(kept: list[TargetRun | None], reader: _Reader) -> TargetRun | None:
    """The run that said last what the target holds (a failed backup deletes nothing: its record keeps what the
    last one that worked there learnt, as of then). Times are kept to the second: in a tie the later of HOLDINGS
    wins, as a status that asks the target within the second of a backup ran after it and counted its snapshots."""
    dated = [(moment, order, run) for order, run in enumerate(kept)
             if run is not None and (moment := _said_at(run, reader)) is not None]
    return max(dated, key=lambda found: found[:2])[2] if dated else None


def _said_at(run: TargetRun, reader: _Reader) -> datetime | None:
    """When the run's facts about what the target holds were true: at its end, or when the command last worked."""
    return reader.time(run.finished_at if _said(run) else run.last_ok_at)


def _silent_since(status: TargetRun | None, held: TargetRun | None, reader: _Reader, offline: bool) -> bool:
    """The last online status could not reach the target, after the newest run that said what it holds."""
    if status is None or _said(status) or offline:  # an offline copy is detached most of the time
        return False
    asked, said = reader.time(status.finished_at), _said_at(held, reader) if held else None
    return asked is not None and (said is None or asked > said)


def _damage(check: Outcome | None, run: TargetRun | None) -> Outcome | None:
    """The last check, as an error only when it found damage (a target it could not reach is not damaged)."""
    if check is None or check.ok or (run is not None and run.facts.get("damaged") is True):
        return check
    return None


def _only(values: Mapping[str, V], databases: frozenset[str]) -> dict[str, V]:
    """Facts about the policy's databases only: one it no longer has is left out everywhere."""
    return {database: value for database, value in values.items() if database in databases}


def _said(run: TargetRun) -> bool:
    """The run learnt what the target holds: it worked there, or the target answered that nothing of ours is there
    (a status that found no repository records 0 snapshots)."""
    return run.ok or run.facts.get("snapshots") == 0


def _answered(state: TargetState, look: Look) -> TargetState:
    return replace(state, reachable=True, unknown=False, snapshots=look.snapshots,
                   newest=look.newest,
                   error=look.error, hint=look.hint, key_created=look.key_created or state.key_created,
                   locked=look.locked,
                   lock_detail=look.lock_detail, lock_hint=look.lock_hint, locked_until=look.locked_until)


def _unanswered(state: TargetState, look: Look, offline: bool) -> TargetState:
    """What it holds now is unknown; an offline copy is detached most of the time, and counts as its record says."""
    if offline:
        return replace(state, reachable=False, error=look.error, hint=look.hint)
    return replace(state, reachable=False, unknown=True, error=look.error, hint=look.hint, locked=None)


def _proven(state: TargetState, kept: Iterable[TargetRun | None], reader: _Reader) -> dict[str, datetime]:
    """Per database, the newest snapshot proven there that the target held still (or as new) when last known;
    for a target that did not answer, the rules count it only to say UNKNOWN."""
    proven = reader.newest_per_database((run.facts for run in kept if run is not None), VERIFIED)
    return {db: moment for db, moment in proven.items() if db in state.newest and moment <= state.newest[db] + SKEW}


def _drill(record: CommandRun | None, reader: _Reader) -> DrillState | None:
    """The last drill: the target its record's ending belongs to (a record keeps every target's last drill)."""
    moment = reader.time(record.finished_at) if record else None
    if record is None or moment is None:
        return None
    dated = [(moment, t) for t in record.targets if (moment := reader.time(t.finished_at)) is not None]
    target = max(dated, key=lambda pair: pair[0])[1] if dated else None
    facts = target.facts if target else {}
    return DrillState(record.outcome == "ok", moment, target.target if target else None,
                      _float(facts.get("rto_s")), _float(facts.get("rpo_s")), record.error)


class _Reader:
    """Reads the record's values as what they claim to be, or as nothing (the record is a file)."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def time(self, value: object, *, ahead: bool = False) -> datetime | None:
        """An ISO time with a zone, not later than now (ahead: any time, e.g. when a lock ends)."""
        moment = recorded_time(value)
        return None if moment is None or (not ahead and moment > self.now + SKEW) else moment

    def newest(self, times: Iterable[datetime | None]) -> datetime | None:
        found = [moment for moment in times if moment is not None]
        return max(found) if found else None

    def times(self, facts: Mapping[str, object], prefix: str) -> dict[str, datetime]:
        """database -> time, for the facts named prefix + database."""
        return {key.removeprefix(prefix): moment for key, value in facts.items()
                if key.startswith(prefix) and (moment := self.time(value)) is not None}

    def newest_per_database(self, facts: Iterable[Mapping[str, object]], prefix: str) -> dict[str, datetime]:
        newest: dict[str, datetime] = {}
        for found in facts:
            for database, moment in self.times(found, prefix).items():
                newest[database] = max(moment, newest.get(database, moment))
        return newest

    def verifications(self, kept: Iterable[TargetRun | None]) -> dict[str, Outcome]:
        """Per database, the newest verification on the target (verify or drill), passed or not."""
        newest: dict[str, Outcome] = {}
        for run in kept:
            facts = run.facts if run else {}
            for database, moment in self.times(facts, VERIFICATION_AT).items():
                ok = facts.get(VERIFICATION_OK + database) is True
                if database not in newest or moment > newest[database].at:
                    newest[database] = Outcome(ok, moment, None if ok or run is None else run.error)
        return newest

    def last(self, run: TargetRun | None) -> Outcome | None:
        """How the run ended on the target, with how much it read (a check)."""
        moment = self.time(run.finished_at) if run else None
        if run is None or moment is None:
            return None
        return Outcome(run.ok, moment, run.error, _str(run.facts.get("read_data_subset")))


def recorded_time(value: object) -> datetime | None:
    """A time the run record holds: ISO 8601 with a zone; anything else is no time."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _fact(run: TargetRun | None, key: str) -> object:
    return None if run is None else run.facts.get(key)


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _bool(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None
