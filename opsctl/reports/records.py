"""Sealed reports as typed records: read by attribute, written exactly as they were sealed.

A record keeps the document it was made from, so `to_json()` gives back those bytes' content
unchanged (the SHA-256 covers them); its fields are only a typed way to read it. Reports written
by older opsctl versions lack some fields: those take their defaults, and nothing is re-sealed.
"""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel, ConfigDict, PrivateAttr, ValidationError

FAILED = "FAILED"


class Record(BaseModel):
    """A part of a report, read from its JSON; unknown keys are kept in the document, not in the record."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class SealedRecord(Record):
    """A whole report; `to_json()` is the sealed document itself."""

    _document: dict[str, Any] = PrivateAttr(default_factory=dict)

    @classmethod
    def of(cls, document: dict[str, Any]) -> Self:
        """The record of a sealed document; ValueError when it lacks what a report of this kind has."""
        try:
            record = cls.model_validate(document)
        except ValidationError as exc:
            raise ValueError(f"not a {cls.__name__}: {exc.error_count()} problem(s)") from None
        record._document = dict(document)
        return record

    def to_json(self) -> dict[str, Any]:
        return dict(self._document)


class TableRow(Record):
    name: str
    rows_expected: int | None = None
    rows_actual: int | None = None
    fingerprint: str = "not compared"
    seconds: float | None = None
    ok: bool = False


class TargetSection(Record):
    """What a verification found on one target."""

    target: str
    location: str = ""
    snapshot_id: str | None = None
    snapshot_time: str | None = None
    manifest_sha256: str | None = None
    dump_bytes: int | None = None
    server_version: str | None = None
    repository: str = "not checked"
    verdict: str = FAILED
    error: str | None = None
    hint: str | None = None
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    started_at: str = "?"
    duration_s: float = 0.0
    reached: bool = True
    tables: tuple[TableRow, ...] = ()


class VerificationReport(SealedRecord):
    """`opsctl-verification/1`: what `opsctl verify` proved, target by target."""

    verdict: str
    summary: str
    policy: str = "?"
    database: str = "?"
    engine: str = "?"
    restored_on: str | None = None  # the server the copy was proven on (older reports: not said)
    started_at: str = "?"
    finished_at: str = "?"
    restic_version: str = "?"
    all_targets: bool = False
    targets_identical: bool | None = None
    targets: tuple[TargetSection, ...] = ()
    sha256: str


class Seconds(Record):
    rto_s: float | None = None
    rpo_s: float | None = None


class Met(Record):
    rto: bool | None = None
    rpo: bool | None = None


class Phase(Record):
    name: str
    seconds: float
    share: float


class DrilledDatabase(Record):
    """One database's part of a drill."""

    database: str
    engine: str = "?"
    snapshot_id: str | None = None
    snapshot_time: str | None = None
    dump_bytes: int | None = None
    manifest_sha256: str | None = None
    tables: int = 0
    rows: int = 0
    verdict: str = FAILED
    error: str | None = None
    hint: str | None = None
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    phases: tuple[Phase, ...] = ()


class DrillReport(SealedRecord):
    """`opsctl-drill/1`: a drill's verdict, RTO and RPO against the objectives, phases and advice."""

    verdict: str
    summary: str
    policy: str
    target: str
    location: str
    offsite: bool = False
    restored_on: str | None = None  # the server the drill restored on (older reports: not said)
    started_at: str = "?"
    finished_at: str = "?"
    objectives: Seconds
    measured: Seconds
    met: Met
    phases: tuple[Phase, ...] = ()
    databases: tuple[DrilledDatabase, ...] = ()
    advice: tuple[str, ...] = ()
    sha256: str
