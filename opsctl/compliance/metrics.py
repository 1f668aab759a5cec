"""Prometheus metrics in node_exporter's textfile format, from the run record and the rules' verdicts.

The file is written after a command, not scraped live, so it carries times (Unix seconds), not
ages: an alert computes `time() - opsctl_..._timestamp_seconds`, which stays right between runs.
The ages it does carry (key age) are as of `opsctl_metrics_timestamp_seconds`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import replace

from prometheus_client import CollectorRegistry, Gauge, generate_latest

from opsctl.audit.runs import SNAPSHOT, CommandRun
from opsctl.compliance.picture import Picture, recorded_time
from opsctl.compliance.rules import PASS, UNKNOWN, RuleVerdict, Status, verdict

_OK = {PASS: 1.0, UNKNOWN: math.nan}  # FAIL: 0


class _Metrics:
    """The gauges, each with the policy as its first label."""

    def __init__(self, policy: str) -> None:
        self.policy = policy
        self.registry = CollectorRegistry()

    def gauge(self, name: str, help_text: str, labels: Iterable[str] = ()) -> Gauge:
        return Gauge(name, help_text, ["policy", *labels], registry=self.registry)

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))


def render(picture: Picture, records: list[CommandRun], verdicts: tuple[RuleVerdict, ...]) -> bytes:
    """The whole textfile: each command's last run, each target's state, the drill and the rules. Targets and
    databases the policy no longer has are left out, so no alert waits for them for ever."""
    metrics = _Metrics(picture.policy.name)
    records = [_current(record, picture) for record in records]
    _runs(metrics, records)
    _targets(metrics, picture, records)
    _drill(metrics, picture)
    _rules(metrics, verdicts)
    metrics.gauge("opsctl_metrics_timestamp_seconds", "When opsctl wrote these metrics.").labels(
        metrics.policy).set(picture.now.timestamp())
    return metrics.render()


def _current(record: CommandRun, picture: Picture) -> CommandRun:
    """The record without the targets and databases the policy has no more."""
    names = {t.name for t in picture.targets}

    def gone(key: str) -> bool:
        return key.startswith(SNAPSHOT) and key.removeprefix(SNAPSHOT) not in picture.databases

    return replace(record, targets=tuple(replace(t, facts={k: v for k, v in t.facts.items() if not gone(k)})
                                         for t in record.targets if t.target in names))


def _runs(metrics: _Metrics, records: list[CommandRun]) -> None:
    ended = metrics.gauge("opsctl_last_run_timestamp_seconds", "When the command's last run ended.", ["command"])
    code = metrics.gauge("opsctl_last_run_exit_code", "The exit code of the command's last run (0 ok, 1 failed, "
                                                      "2 refused, 3 partly failed, 75 skipped).", ["command"])
    took = metrics.gauge("opsctl_last_run_duration_seconds", "How long the command's last run took.", ["command"])
    success = metrics.gauge("opsctl_last_success_timestamp_seconds",
                            "When the command last worked: per target (backup: per database, the time of the newest "
                            "snapshot it delivered there).", ["target", "database", "command"])
    for record in records:
        finished = _unix(record.finished_at)
        if finished is None or record.exit_code is None:
            continue
        ended.labels(metrics.policy, record.command).set(finished)
        code.labels(metrics.policy, record.command).set(record.exit_code)
        took.labels(metrics.policy, record.command).set(record.duration_s or 0.0)
        for target in record.targets:
            for database, moment in _per_database(target.facts, SNAPSHOT) if record.command == "backup" else ():
                success.labels(metrics.policy, target.target, database, record.command).set(moment)
            if (last_ok := _unix(target.last_ok_at)) is not None and record.command != "backup":
                success.labels(metrics.policy, target.target, "", record.command).set(last_ok)
        if not record.targets and record.outcome == "ok":
            success.labels(metrics.policy, "", "", record.command).set(finished)


def _targets(metrics: _Metrics, picture: Picture, records: list[CommandRun]) -> None:
    newest = metrics.gauge("opsctl_newest_snapshot_timestamp_seconds",
                           "The time of the newest snapshot of the database on the target.", ["target", "database"])
    verified = metrics.gauge("opsctl_newest_verified_snapshot_timestamp_seconds",
                             "The time of the newest snapshot of the database proven on the target (verify, drill, "
                             "verified restore).", ["target", "database"])
    verify_ok = metrics.gauge("opsctl_verify_ok", "1 when the newest verification (verify or drill) of every database "
                                                  "on the target passed.", ["target"])
    check_ok = metrics.gauge("opsctl_check_ok", "1 when the target's last restic check found no errors.", ["target"])
    key_age = metrics.gauge("opsctl_key_age_seconds", "The age of opsctl's key on the target when the metrics were "
                                                      "written.", ["target"])
    immutable = metrics.gauge("opsctl_target_immutable", "1 when the target's storage locks what it holds "
                                                         "(S3 Object Lock), as last read.", ["target"])
    for t in picture.targets:
        for database, moment in t.newest.items():
            newest.labels(metrics.policy, t.name, database).set(moment.timestamp())
        for database, moment in t.verified.items():
            verified.labels(metrics.policy, t.name, database).set(moment.timestamp())
        if t.verification is not None:
            verify_ok.labels(metrics.policy, t.name).set(float(t.verification.ok))
        if t.check is not None:
            check_ok.labels(metrics.policy, t.name).set(float(t.check.ok))
        if t.key_created is not None:
            key_age.labels(metrics.policy, t.name).set((picture.now - t.key_created).total_seconds())
        if t.locked is not None:
            immutable.labels(metrics.policy, t.name).set(float(t.locked))
    _backup_bytes(metrics, records)


def _backup_bytes(metrics: _Metrics, records: list[CommandRun]) -> None:
    added = metrics.gauge("opsctl_backup_bytes", "Bytes the target's last backup added (primary) or copied to it "
                                                 "(replica).", ["target", "role"])
    backup = next((r for r in records if r.command == "backup"), None)
    for target in backup.targets if backup else ():
        value, role = target.facts.get("bytes_added"), target.facts.get("role")
        if isinstance(value, int) and not isinstance(value, bool):
            added.labels(metrics.policy, target.target, str(role or "")).set(value)


def _drill(metrics: _Metrics, picture: Picture) -> None:
    drill = picture.drill
    if drill is None:
        return
    labels = (metrics.policy, drill.target or "")
    metrics.gauge("opsctl_drill_ok", "1 when the last drill passed (RTO and RPO within the objectives).",
                  ["target"]).labels(*labels).set(float(drill.ok))
    metrics.gauge("opsctl_drill_timestamp_seconds", "When the last drill ended.", ["target"]).labels(*labels).set(
        drill.at.timestamp())
    if drill.rto_s is not None:
        metrics.gauge("opsctl_drill_rto_seconds", "The recovery time the last drill measured.",
                      ["target"]).labels(*labels).set(drill.rto_s)
    if drill.rpo_s is not None:
        metrics.gauge("opsctl_drill_rpo_seconds", "The data loss (age of the restored snapshot) the last drill "
                                                  "measured.", ["target"]).labels(*labels).set(drill.rpo_s)


def _rules(metrics: _Metrics, verdicts: tuple[RuleVerdict, ...]) -> None:
    rule_ok = metrics.gauge("opsctl_rule_ok", "1 when the rule passes, 0 when it fails, NaN when unknown (a target "
                                              "did not answer).", ["rule", "required"])
    for v in verdicts:
        rule_ok.labels(metrics.policy, v.rule, str(v.required).lower()).set(_value(v.status))
    metrics.gauge("opsctl_compliance_ok", "1 when every required rule passes, 0 when one fails, NaN when one is "
                                          "unknown.").labels(metrics.policy).set(_value(verdict(verdicts)))


def _value(status: Status) -> float:
    return _OK.get(status, 0.0)


def _per_database(facts: Mapping[str, object], prefix: str) -> list[tuple[str, float]]:
    return [(key.removeprefix(prefix), moment) for key, value in facts.items()
            if key.startswith(prefix) and (moment := _unix(value)) is not None]


def _unix(value: object) -> float | None:
    moment = recorded_time(value)
    return None if moment is None else moment.timestamp()
