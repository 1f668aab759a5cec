"""The fleet: the status each host publishes (its compliance document in an envelope), and what `opsctl fleet
status` makes of it when it reads it.

A document is frozen when it is published; the fleet reads it later. So two things are judged again at
read time, whatever the document's verdict says. A host is stale once its document is older than its
own RPO: it has not finished a job (or could not publish) for longer than the data the policy accepts to
lose. And its data is too old once its newest verified snapshot is older than its RPO (the rpo rule,
again, now): a check that published PASS while that snapshot was fresh does not make it fresh for ever.
Documents come from storage others can write: fleet_documents.py says what is believed of one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from opsctl import __version__
from opsctl.compliance.document import iso
from opsctl.compliance.rules import FAIL, PASS, UNKNOWN, Status
from opsctl.policy.durations import human_duration
from opsctl.policy.fields import NAME_PATTERN

FORMAT = "opsctl-fleet/1"
RPO_RULE = "rpo"
# Why a document does not count: not read at all, read but not one opsctl writes, or one that may mislead.
UNREADABLE, INVALID, DOUBTFUL = "unreadable", "invalid", "doubtful"


def envelope(host: str, policy: str, status: dict[str, Any], now: datetime) -> dict[str, Any]:
    """What a host publishes: who and when, around its offline compliance document (no row, no secret in it)."""
    return {"format": FORMAT, "host": host, "policy": policy, "published_at": iso(now),
            "opsctl_version": __version__, "status": status}


def encode(published: dict[str, Any]) -> bytes:
    """The bytes written to the fleet folder: compact JSON, keys sorted (the same status, the same bytes)."""
    return json.dumps(published, sort_keys=True, separators=(",", ":")).encode()


class _Strict(BaseModel):
    """Only the fields shown; each of exactly its JSON type (no "1" for 1, no naive time); the rest ignored."""

    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")


Name = Annotated[str, Field(pattern=NAME_PATTERN)]
Verdict = Literal["PASS", "FAIL", "UNKNOWN"]
Moment = AwareDatetime | None


class PublishedRule(_Strict):
    rule: Name
    required: bool
    status: Verdict


class PublishedDatabase(_Strict):
    newest_snapshot_at: Moment = None
    newest_verified_at: Moment = None


class PublishedTarget(_Strict):
    target: Name
    newest_snapshot_at: Moment = None
    newest_verified_at: Moment  # of every database there: the oldest of their newest verified snapshots
    databases: dict[Name, PublishedDatabase] = Field(default_factory=dict, max_length=64)


class PublishedDrill(_Strict):
    ok: bool
    at: AwareDatetime


class PublishedObjectives(_Strict):
    rpo_s: Annotated[float, Field(gt=0, le=1e10, allow_inf_nan=False)]


class PublishedStatus(_Strict):
    format: Literal["opsctl-compliance/1"]
    policy: Name
    verdict: Verdict
    databases: tuple[Name, ...] = Field(max_length=64)
    objectives: PublishedObjectives
    rules: tuple[PublishedRule, ...] = Field(max_length=32)
    targets: tuple[PublishedTarget, ...] = Field(max_length=64)
    drill: PublishedDrill | None


class Published(_Strict):
    """A host's document, as far as the fleet view reads it."""

    format: Literal["opsctl-fleet/1"]
    host: Name
    policy: Name
    published_at: AwareDatetime
    opsctl_version: Annotated[str, Field(pattern=r"^[0-9A-Za-z.+_-]{1,40}$")]
    status: PublishedStatus

    def newest(self, field: Literal["newest_snapshot_at", "newest_verified_at"]) -> datetime | None:
        """When every database last had such a snapshot on some target (the rpo rule's way); None if one never had."""
        moments = [max((m for t in self.status.targets if (m := _moment(t, database, field)) is not None),
                       default=None) for database in self.status.databases]
        return None if not moments or None in moments else min(m for m in moments if m is not None)

    def requires_rpo(self) -> bool:
        """Whether the host's policy requires the rpo rule (a document that does not say is held to it)."""
        return next((r.required for r in self.status.rules if r.rule == RPO_RULE), True)


def _moment(target: PublishedTarget, database: str, field: str) -> datetime | None:
    """One database's time on one target; from the target's time for all its databases when not given apart."""
    own = target.databases.get(database)
    moment: datetime | None = getattr(own, field) if own is not None else None
    return moment if moment is not None else getattr(target, field)


@dataclass(frozen=True)
class HostStatus:
    """One row of the fleet: the host and policy its path names, what its document says, and what is wrong."""

    policy: str
    host: str
    now: datetime
    published: Published | None = None
    flaw: str | None = None  # UNREADABLE, INVALID or DOUBTFUL: why the document does not count
    problem: str | None = None  # the flaw in the on-call engineer's words
    hint: str | None = None

    @property
    def file(self) -> str:
        return f"fleet/{self.policy}/{self.host}.json"

    @property
    def stale(self) -> bool:
        """Older than its own RPO: it has not published (finished a job) for longer than the data it may lose."""
        p = self.published
        return p is not None and self._over_rpo(p.published_at)

    @property
    def data_too_old(self) -> bool:
        """The rpo rule judged now: its newest verified snapshot is older than its RPO (a host with none fails in its
        own document already, when its policy requires the rule)."""
        p = self.published
        return p is not None and p.requires_rpo() and self._over_rpo(p.newest("newest_verified_at"))

    @property
    def status(self) -> Status:
        """What this host adds to the fleet's verdict, judged now: a document that does not count is UNKNOWN, a stale
        host or one whose data is too old FAILs, whatever its document says; else the document's verdict."""
        if self.published is None or self.flaw is not None:
            return UNKNOWN
        return FAIL if self.stale or self.data_too_old else self.published.status.verdict

    @property
    def state(self) -> str:
        """Why the status, in one word for the row: ok, failing, unknown, stale, unreadable, invalid or doubtful."""
        if self.flaw is not None or self.published is None:
            return self.flaw or UNREADABLE
        if self.stale:
            return "stale"
        return {PASS: "ok", FAIL: "failing"}.get(self.status, "unknown")

    def age_s(self, moment: datetime | None) -> float | None:
        """How long before the fleet was read; never negative (a clock ahead is the problem's to say)."""
        return None if moment is None else round(max(0.0, (self.now - moment).total_seconds()), 1)

    def _over_rpo(self, moment: datetime | None) -> bool:
        p = self.published
        return p is not None and moment is not None and (self.now - moment).total_seconds() > p.status.objectives.rpo_s

    def why(self) -> tuple[str | None, str | None]:
        """What is wrong with this host, and what to do, for an on-call engineer; (None, None) when nothing."""
        if self.flaw is not None or self.published is None:
            return self.problem, self.hint
        found = [f for f in (self._stale_why(), self._data_why(), self._verdict_why()) if f is not None]
        if not found:
            return None, None
        return "; ".join(said for said, _ in found), "; ".join(dict.fromkeys(todo for _, todo in found))

    def _stale_why(self) -> tuple[str, str] | None:
        p = self.published
        if p is None or not self.stale:
            return None
        said = (f"last published {self._ago(p.published_at)} ago, more than its RPO {self._rpo()}: no job has "
                "finished there since, or it could not publish")
        return said, (f"on {self.host}: opsctl schedule status (are its jobs running?), then opsctl status; if "
                      f"{self.host} was retired or renamed, remove {self.file} with an administrator's keys")

    def _data_why(self) -> tuple[str, str] | None:
        p = self.published
        if p is None or not self.data_too_old:
            return None
        said = (f"the newest verified snapshot is {self._ago(p.newest('newest_verified_at'))} old, more than its RPO "
                f"{self._rpo()}")
        snapshot = p.newest("newest_snapshot_at")
        if snapshot is not None and not self._over_rpo(snapshot):
            return (f"{said} (a newer snapshot, {self._ago(snapshot)} old, is not verified yet)",
                    f"on {self.host}: opsctl verify; opsctl schedule status shows whether its verify job runs")
        return said, (f"on {self.host}: opsctl backup, then opsctl verify; opsctl schedule status shows whether its "
                      "jobs run")

    def _verdict_why(self) -> tuple[str, str] | None:
        p = self.published
        if p is None or p.status.verdict == PASS:
            return None
        failing = [r.rule for r in p.status.rules if r.required and r.status != PASS]
        if p.status.verdict == FAIL:
            return f"fails {', '.join(failing)}", f"on {self.host}: opsctl status says why and what to do"
        return (f"{', '.join(failing)} unknown: a target did not answer or was never read",
                f"on {self.host}: opsctl status (without --offline) asks every target")

    def _ago(self, moment: datetime | None) -> str:
        return human_duration(self.age_s(moment) or 0)

    def _rpo(self) -> str:
        return human_duration(self.published.status.objectives.rpo_s) if self.published else "?"

    def to_json(self) -> dict[str, Any]:
        """The row. `status` is what the host adds to the fleet's verdict, judged now; `state` says why in one word;
        `published_verdict` is what its own document said when it was published (the two differ once it is stale or
        its data too old). `rules` are as published, but rpo as judged now."""
        p = self.published
        drill = p.status.drill if p else None
        problem, hint = self.why()
        verified, snapshot = (p.newest("newest_verified_at"), p.newest("newest_snapshot_at")) if p else (None, None)
        return {"host": self.host, "policy": self.policy, "file": self.file, "state": self.state,
                "status": self.status, "published_verdict": p.status.verdict if p else None,
                "databases": list(p.status.databases) if p else [], "rules": self._rules(),
                "newest_verified_at": iso(verified), "newest_verified_age_s": self.age_s(verified),
                "newest_snapshot_at": iso(snapshot), "newest_snapshot_age_s": self.age_s(snapshot),
                "drill": drill and {"ok": drill.ok, "at": iso(drill.at), "age_s": self.age_s(drill.at)},
                "published_at": iso(p.published_at) if p else None,
                "published_age_s": self.age_s(p.published_at) if p else None,
                "rpo_s": p.status.objectives.rpo_s if p else None, "stale": self.stale,
                "data_too_old": self.data_too_old, "opsctl_version": p.opsctl_version if p else None,
                "problem": problem, "hint": hint}

    def _rules(self) -> list[dict[str, Any]]:
        rules = self.published.status.rules if self.published else ()
        return [{"rule": r.rule, "required": r.required,
                 "status": FAIL if r.rule == RPO_RULE and self._data_over_rpo() else r.status} for r in rules]

    def _data_over_rpo(self) -> bool:
        p = self.published
        return p is not None and self._over_rpo(p.newest("newest_verified_at"))


def fleet_verdict(hosts: list[HostStatus], cut: bool = False) -> Status:
    """FAIL when a host fails or is stale, else UNKNOWN when one is unknown or does not count, when the listing was
    cut (a host may be missing), or when none published; else PASS."""
    statuses = {h.status for h in hosts}
    if FAIL in statuses:
        return FAIL
    return UNKNOWN if UNKNOWN in statuses or cut or not hosts else PASS
