"""The auditor's compliance page: `opsctl status`'s answer, sealed as a JSON and HTML pair like every report.

The content is the compliance document (`opsctl.compliance.document`); sealing, writing and
checking are shared with verification and drill reports in `sealed`. The page is read days later,
on paper: every age on it is counted back from when status checked, never from when it is read,
and a value nobody learnt reads "unknown" or "never", not a blank.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from opsctl.compliance.document import FORMAT
from opsctl.compliance.rules import Status
from opsctl.policy.durations import human_duration
from opsctl.reports import sealed
from opsctl.reports.records import Record, SealedRecord

if TYPE_CHECKING:
    from opsctl.reports.signing import Signer

# build() checks these are absent: stamp(), seal() and sign() set them, and a content that carried them would lose
# them.
_ADDED = ("finished_at", "host", "user", "opsctl_version", "sha256", "signature")
# What each rule asks, for a reader who does not know the words; a rule not listed here is shown by name alone.
MEANING = {
    "3-2-1": "3 copies of the data (the live database is one), on 2 kinds of media, 1 of them off-site",
    "3-2-1-1-0": "3-2-1, plus 1 copy immutable or offline, plus 0 errors in every target's newest verification",
    "rpo": "the newest verified snapshot of every database is younger than the recovery point objective",
    "key-age": "opsctl's repository key on every target is younger than the maximum key age",
    "drill": "the last disaster-recovery drill passed, and recently enough",
}


class RuleRow(Record):
    rule: str
    required: bool
    status: Status
    reason: str
    todo: str | None


class RunRow(Record):
    """How a command last ended on a target (verification, or check with its cycle)."""

    ok: bool
    at: str | None
    age_s: float | None
    error: str | None
    read: str | None
    cycle: str | None = None


class DatabaseTimes(Record):
    newest_snapshot_at: str | None
    newest_verified_at: str | None


class TargetRow(Record):
    """One target as status saw it; None is what status did not learn."""

    target: str
    location: str
    kind: str
    media: str
    offsite: bool
    offline: bool
    reachable: bool | None
    error: str | None
    hint: str | None
    snapshots: int | None
    newest_snapshot_at: str | None
    newest_snapshot_age_s: float | None
    newest_verified_at: str | None
    newest_verified_age_s: float | None
    databases: dict[str, DatabaseTimes]
    last_verification: RunRow | None
    last_check: RunRow | None
    immutable: bool | None
    lock: str | None
    lock_hint: str | None
    locked_until: str | None
    key_created: str | None
    key_age_s: float | None


class DrillRow(Record):
    ok: bool
    at: str
    age_s: float | None
    target: str | None
    rto_s: float | None
    rpo_s: float | None
    error: str | None


class ComplianceObjectives(Record):
    rpo_s: float
    max_key_age_s: float
    drill_max_age_s: float


class ComplianceReport(SealedRecord):
    """`opsctl-compliance/1`: whether the data is protected as the policy requires, rule by rule, target by target."""

    verdict: Status
    summary: str
    policy: str
    mode: Literal["online", "offline"]
    checked_at: str
    databases: tuple[str, ...]
    objectives: ComplianceObjectives
    rules: tuple[RuleRow, ...]
    targets: tuple[TargetRow, ...]
    drill: DrillRow | None
    finished_at: str
    host: str
    user: str
    opsctl_version: str
    sha256: str


def build(content: dict[str, Any], signer: Signer | None = None) -> ComplianceReport:
    """The sealed report: the compliance document plus when, where, by whom and with which opsctl it was made,
    signed when there is a signer."""
    clash = [k for k in _ADDED if k in content]
    if content.get("format") != FORMAT or clash:
        raise ValueError(f"compliance report content: format {content.get('format')!r} (not {FORMAT!r}) "
                         f"or keys opsctl sets itself {clash}")
    return ComplianceReport.of(sealed.sign(sealed.seal(sealed.stamp(content)), signer))


def write(report: ComplianceReport, folder: Path, group: str | None = None) -> tuple[Path, Path]:
    """`compliance-<stamp>-<policy>-<sha8>.json` and `.html` in `folder`, readable by `group` too; returns
    (json, html)."""
    return sealed.write_pair(report.to_json(), folder, "compliance", report.policy, render_html, group=group)


def render_html(report: dict[str, Any]) -> str:
    """The HTML page for a compliance report; the same report always gives the same bytes.

    The page is drawn from the typed record, so a value of the wrong type fails here (and `report
    verify` calls such a page altered) instead of showing something opsctl never wrote.
    """
    record = ComplianceReport.of(report)
    return sealed.template("compliance.html.j2").render(r=record, meaning=MEANING, age=age, duration=human_duration,
                                                        signature=sealed.signature_label(report),
                                                        embedded=sealed.embed(report))


def age(seconds: float | None, unknown: str = "unknown") -> str:
    """A duration people read ('5h12m'), or `unknown` when status did not learn it."""
    return unknown if seconds is None else human_duration(seconds)
