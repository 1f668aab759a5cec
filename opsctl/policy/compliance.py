"""The policy's `compliance:` and `metrics:` sections, and an S3 target's `object_lock:`.

Which protection rules a policy requires (checked by `opsctl status`), where Prometheus metrics
go, and how long an S3 bucket keeps every object it is given beyond anyone's reach.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import Field, field_validator

from opsctl.policy.fields import Duration, PolicyPath, Strict

RuleName = Literal["3-2-1", "3-2-1-1-0", "rpo", "key-age", "drill"]
RULES: tuple[RuleName, ...] = ("3-2-1", "3-2-1-1-0", "rpo", "key-age", "drill")
DEFAULT_RULES: tuple[RuleName, ...] = ("3-2-1", "rpo")


class Compliance(Strict):
    """What `opsctl status` requires: its exit code is 0 only when each of these rules passes."""

    rules: tuple[RuleName, ...] = Field(
        DEFAULT_RULES, min_length=1, description="the rules that must pass: 3-2-1, 3-2-1-1-0, rpo, key-age, drill")
    drill_max_age: Duration = Field(
        timedelta(days=35), description="the drill rule fails when the last passed drill is older than this")

    @field_validator("rules")
    @classmethod
    def _once_each(cls, rules: tuple[RuleName, ...]) -> tuple[RuleName, ...]:
        if len(set(rules)) != len(rules):
            raise ValueError("each rule may be listed only once")
        return rules


class Metrics(Strict):
    """Prometheus metrics, written for node_exporter's textfile collector after every command."""

    textfile: PolicyPath | None = Field(
        None, description="the .prom file to write, e.g. /var/lib/prometheus/node-exporter/opsctl-crm.prom; "
                          "default: none")

    @field_validator("textfile")
    @classmethod
    def _prom_file(cls, path: PolicyPath | None) -> PolicyPath | None:
        if path is not None and path.suffix != ".prom":
            raise ValueError(f"{path}: node_exporter's textfile collector reads only files ending in .prom; "
                             "name it like opsctl-crm.prom")
        return path


LockMode = Literal["GOVERNANCE", "COMPLIANCE"]


class ObjectLock(Strict):
    """S3 Object Lock: every object the bucket receives stays undeletable and unchanged for `days`."""

    mode: LockMode = Field(..., description="GOVERNANCE (an admin with a special right may lift it) or COMPLIANCE "
                                            "(nobody can, not even the account's root)")
    days: int = Field(..., ge=1, le=36500, description="how long each object stays locked after it is written")


def retention_span(keep: dict[str, int], backup_gap: timedelta | None) -> timedelta | None:
    """How long the keep-rules keep a snapshot at most: each rule keeps one snapshot per period (or per backup,
    when backups are further apart than that), for as many as it counts (keep_last: only with a backup
    schedule); None when no rule says."""
    periods = {"keep_last": timedelta(0), "keep_hourly": timedelta(hours=1), "keep_daily": timedelta(days=1),
               "keep_weekly": timedelta(weeks=1), "keep_monthly": timedelta(days=31),
               "keep_yearly": timedelta(days=366)}
    gap = backup_gap or timedelta(0)
    spans = [max(periods[rule], gap) * count for rule, count in keep.items()
             if rule in periods and (rule != "keep_last" or backup_gap is not None)]
    return max(spans) if spans else None
