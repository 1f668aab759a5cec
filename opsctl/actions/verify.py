"""opsctl verify: restore a snapshot into a scratch database, prove it equals the backup, write a report."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opsctl.actions.check import DAMAGED_HINT, first_error
from opsctl.actions.context import App, Session
from opsctl.actions.fingerprint_check import Comparison, TableCheck
from opsctl.actions.locate import first_reachable_target
from opsctl.actions.outcome import AuditFacts, Outcome, Problem, TargetResult
from opsctl.actions.recovery import check_room, fetch, load_snapshot, pick_snapshot, prove, scratch
from opsctl.actions.runner import Command, Secrets
from opsctl.actions.servers import ServerChoice, source_on, sources_on
from opsctl.audit.runs import Fact, verification_facts
from opsctl.errors import BadInput, ExitCode, OpsctlError
from opsctl.manifest import Manifest
from opsctl.reports import console, sealed, signing, verification
from opsctl.reports.records import VerificationReport
from opsctl.restic import Repository
from opsctl.restic.errors import ResticError
from opsctl.restic.errors import TargetUnreachable as ResticUnreachable
from opsctl.restic.models import CheckResult, Snapshot
from opsctl.sources import Source
from opsctl.targets import Target, TargetUnreachable


@dataclass(frozen=True)
class VerifyRequest:
    snapshot: str = "latest"
    target: str | None = None
    all_targets: bool = False
    database: str | None = None
    server: ServerChoice = field(default_factory=ServerChoice)  # default: the recovery server, when the policy has one


@dataclass(frozen=True)
class TargetVerification:
    """What verifying one snapshot on one target found."""

    target: str
    location: str
    snapshot_id: str | None
    snapshot_time: str | None
    manifest_sha256: str | None
    dump_bytes: int | None
    repository: str
    comparison: Comparison | None
    error: str | None
    hint: str | None
    started_at: str
    duration_s: float
    server_version: str | None = None
    reached: bool = True  # False: the target could not be reached, which says nothing about its data

    @property
    def ok(self) -> bool:
        return self.error is None and self.comparison is not None and self.comparison.ok


@dataclass(frozen=True)
class Verified(Outcome):
    """The sealed verification report and where it was written."""

    report: VerificationReport
    files: tuple[Path, ...]

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.OK if self.report.verdict == sealed.PASSED else ExitCode.FAILURE

    def to_json(self) -> dict[str, Any]:
        return {**self.report.to_json(), "files": [str(p) for p in self.files]}

    def target_results(self) -> list[TargetResult[None]]:
        return [TargetResult(t.target, t.location, duration_s=t.duration_s,
                             problem=None if t.verdict == sealed.PASSED else
                             Problem(t.error or "; ".join(t.problems[:3]) or "not proven", t.hint))
                for t in self.report.targets]

    def target_facts(self) -> dict[str, dict[str, Fact]]:
        """How verifying the database went on each target, and the snapshot each pass proved, for status."""
        return {t.target: verification_facts(self.report.database, t.verdict == sealed.PASSED,
                                             self.report.finished_at, t.snapshot_time)
                for t in self.report.targets if t.reached}  # one not reached was not verified, nor found wrong

    def audit(self) -> AuditFacts:
        targets = self.report.targets
        return AuditFacts(targets=tuple(t.location for t in targets),
                          snapshot_ids=tuple(sorted({t.snapshot_id for t in targets if t.snapshot_id})),
                          error=None if self.exit_code == ExitCode.OK else self.report.summary,
                          details={"verdict": self.report.verdict, "report": str(self.files[0]),
                                   "report_sha256": self.report.sha256})

    def show(self, app: App) -> None:
        console.show_verify(app, self.report, self.files)


def _verify(session: Session, request: VerifyRequest) -> Verified:
    source = source_on(session, request.server, request.database, prefers_recovery=True)
    targets = _targets(session, request)
    for target in targets:
        session.attempting(target.display)
    started = sealed.now()
    results = [_verify_on(session, source, target, request.snapshot) for target in targets]
    about = {"policy": session.policy.name, "database": source.database, "engine": source.engine,
             "restored_on": source.where, "started_at": started, "restic_version": f"restic {session.restic.version}"}
    content = report_content(about, results, all_targets=request.all_targets)
    report = verification.build(content, signing.signer_or_warn(session.policy))
    return Verified(report, verification.write(report, session.state_dir / "reports", session.policy.report_group))


def _precheck(_: App, request: VerifyRequest) -> None:
    if request.all_targets and request.target:
        raise BadInput("--target and --all-targets cannot be used together", "give one of them")


def _targets(session: Session, request: VerifyRequest) -> list[Target]:
    if request.all_targets:
        return [session.target(config) for config in session.target_configs()]
    if request.target is None:
        return [first_reachable_target(session, None)]
    return [session.target(session.target_configs(request.target)[0])]


def _verify_on(session: Session, source: Source, target: Target, wanted: str) -> TargetVerification:
    """Every failure becomes part of the result, so each target gets its verdict and the report is written."""
    started, clock = sealed.now(), time.monotonic()
    found: dict[str, Any] = {}
    try:
        target.probe()
        repo = session.repository(target)
        snapshot = pick_snapshot(session.restic.snapshots(repo, session.snapshot_tags(source)), wanted)
        found.update(snapshot_id=snapshot.short_id, snapshot_time=snapshot.time.isoformat())
        check_room(session, source, repo, snapshot)
        subset = session.policy.verification.read_data_subset
        with ThreadPoolExecutor(max_workers=1) as pool:
            check = _Check(pool, lambda: session.restic.check(repo, subset), subset)
            try:
                manifest, comparison = _restore_and_compare(session, source, repo, snapshot, check)
            finally:
                found["repository"] = check.describe()
            checked = check.result()
        found.update(manifest_sha256=manifest.sha256, dump_bytes=manifest.dump_bytes, comparison=comparison,
                     server_version=manifest.facts.server_version)
        _require_sound(checked)
    except OpsctlError as exc:
        found.update(error=exc.message, hint=exc.hint,
                     reached=not isinstance(exc, (ResticUnreachable, TargetUnreachable)))
    return TargetVerification(target=target.name, location=target.display, snapshot_id=found.get("snapshot_id"),
                              snapshot_time=found.get("snapshot_time"), manifest_sha256=found.get("manifest_sha256"),
                              dump_bytes=found.get("dump_bytes"), repository=found.get("repository", "not checked"),
                              comparison=found.get("comparison"), error=found.get("error"), hint=found.get("hint"),
                              started_at=started, duration_s=round(time.monotonic() - clock, 3),
                              server_version=found.get("server_version"), reached=found.get("reached", True))


def _require_sound(checked: CheckResult) -> None:
    if not checked.ok:
        raise OpsctlError(f"the repository is damaged: {first_error(checked.report)}", DAMAGED_HINT)


def _restore_and_compare(session: Session, source: Source, repo: Repository, snapshot: Snapshot,
                         check: _Check) -> tuple[Manifest, Comparison]:
    """Restore, then check the repository (restic check locks it exclusively) while the fingerprints are computed."""
    with fetch(session, source, repo, snapshot) as chunks, scratch(session, source, snapshot, "verify") as staging:
        try:
            manifest = load_snapshot(session, source, chunks, staging, verb="verifying")
        except ResticError as exc:
            if check.start().result().ok:
                raise
            raise OpsctlError(f"the repository is damaged: {exc.message}", DAMAGED_HINT) from None
        check.start()
        return manifest, prove(session, source, staging, manifest, snapshot)


class _Check:
    """restic check of the target, started once (after the restore: it takes restic's exclusive lock)."""

    def __init__(self, pool: ThreadPoolExecutor, run: Callable[[], CheckResult], subset: str) -> None:
        self._pool, self._run, self._subset = pool, run, subset
        self._future: Future[CheckResult] | None = None

    def start(self) -> Future[CheckResult]:
        if self._future is None:
            self._future = self._pool.submit(self._run)
        return self._future

    def result(self) -> CheckResult:
        return self.start().result()

    def describe(self) -> str:
        """The result in a few words; "not checked" when the verification stopped before the check began."""
        if self._future is None:
            return "not checked"
        try:
            checked = self._future.result()
        except OpsctlError as exc:
            return f"could not be checked: {exc.message}"
        except BaseException:  # noqa: BLE001 - interrupted: the run is ending anyway
            return "not checked"
        if checked.ok:
            return f"no errors (structure and {self._subset} of the data read back)"
        return f"DAMAGED: {first_error(checked.report)}"



def report_content(about: dict[str, Any], results: Sequence[TargetVerification], *,
                   all_targets: bool) -> dict[str, Any]:
    """What the verification report says, from the per-target results; `about` names policy, database, tools."""
    identical = _identical(results) if all_targets and len(results) > 1 else None
    passed = all(r.ok for r in results) and identical is not False
    return {"verdict": sealed.PASSED if passed else sealed.FAILED, "summary": _summary(results, passed, identical),
            **about, "all_targets": all_targets, "targets_identical": identical,
            "targets": [_target_content(r) for r in results]}


def _target_content(result: TargetVerification) -> dict[str, Any]:
    tables = result.comparison.tables if result.comparison else ()
    return {
        "target": result.target, "location": result.location, "snapshot_id": result.snapshot_id,
        "snapshot_time": result.snapshot_time, "manifest_sha256": result.manifest_sha256,
        "dump_bytes": result.dump_bytes, "server_version": result.server_version, "repository": result.repository,
        "verdict": sealed.PASSED if result.ok else sealed.FAILED, "error": result.error, "hint": result.hint,
        "problems": list(result.comparison.problems) if result.comparison else [],
        "notes": list(result.comparison.notes) if result.comparison else [],
        "started_at": result.started_at, "duration_s": result.duration_s, "reached": result.reached,
        "tables": [{"name": t.name, "rows_expected": t.rows_expected, "rows_actual": t.rows_actual,
                    "fingerprint": _fingerprint_word(t),
                    "seconds": t.seconds, "ok": t.ok} for t in tables],
    }


def _fingerprint_word(table: TableCheck) -> str:
    if not table.comparable:
        return "row count only (not comparable)"
    return {True: "match", False: "MISMATCH", None: "not compared"}[table.fingerprint_match]


def _identical(results: Sequence[TargetVerification]) -> bool:
    hashes = {r.manifest_sha256 for r in results}
    return len(hashes) == 1 and None not in hashes


def _first_problem(result: TargetVerification) -> str:
    """Why a target did not pass: its error, else its comparison's first problem (a failed one has either)."""
    if result.error or result.comparison is None:
        return result.error or "not proven"
    return result.comparison.problems[0]


def _summary(results: Sequence[TargetVerification], passed: bool, identical: bool | None) -> str:
    if passed:
        comparisons = [r.comparison for r in results if r.comparison is not None]  # passed: every target has one
        tables = sum(len(c.tables) for c in comparisons)
        where = f"{len(results)} targets, byte-identical backups" if identical else "1 target"
        partly = sum(len(c.tables) - c.proven for c in comparisons)
        if partly:
            return (f"The restored database matches the backup: {tables} table checks, {partly} of them by row count "
                    f"or presence only (see the notes), schema and values match ({where}).")
        return f"The restored database equals the backup: {tables} table checks, schema and values match ({where})."
    first = next((_first_problem(r) for r in results if not r.ok), None)
    if first is None:
        return "The targets hold different backups: their manifests' SHA-256 differ."
    return f"The backup could not be proven: {first}"


VERIFY = Command("verify", _verify, lock=True, restic=True, secrets=Secrets.ALL, precheck=_precheck,
                 servers=lambda session, request: sources_on(session, request.server, prefers_recovery=True))
