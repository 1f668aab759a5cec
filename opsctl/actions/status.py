"""opsctl status: is the database protected the way the policy says, right now? Rules, targets, exit code.

Online, each target is asked once, all at the same time, for the snapshots of this policy, the
age of opsctl's key and its lock, within --timeout; a target that does not answer in time is
reported as such and its record is used. --offline answers from the run record alone. Nothing
is written into any target: restic runs only `snapshots --no-lock`, and the key's age is read
from the key file itself (restic 0.14's `key list` locks the repository even with --no-lock).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from rich.markup import escape

from opsctl.actions.answer_files import DEFAULT_TIMEOUT_S, check_output_file, write_own
from opsctl.actions.context import App, Session, as_operator_error
from opsctl.actions.metrics import is_metrics, write_metrics
from opsctl.actions.outcome import AuditFacts, Outcome, Problem, TargetResult
from opsctl.actions.runner import Command, Secrets
from opsctl.actions.status_document import evaluated
from opsctl.audit import runs
from opsctl.audit.runs import Fact
from opsctl.compliance import document
from opsctl.compliance.document import iso
from opsctl.compliance.picture import Look, Picture
from opsctl.compliance.rules import FAIL, PASS, RuleVerdict, Status, verdict
from opsctl.errors import BadInput, ExitCode, OpsctlError
from opsctl.policy.model import Target as TargetConfig
from opsctl.reports import compliance_view, sealed
from opsctl.restic import Restic
from opsctl.restic.errors import RepositoryNotFound, WrongPassword
from opsctl.restic.models import key_file_created
from opsctl.targets import Access, Immutability, Target
from opsctl.targets.errors import HostileTarget


@dataclass(frozen=True)
class StatusRequest:
    offline: bool = False
    timeout_s: float | None = None  # None: DEFAULT_TIMEOUT_S
    prometheus: Path | None = None
    html: Path | None = None


@dataclass(frozen=True)
class StatusAnswer(Outcome):
    """The rules' verdicts over what is known of every target, and the files written with them."""

    picture: Picture
    verdicts: tuple[RuleVerdict, ...]
    document: dict[str, Any]
    looks: dict[str, Look] = field(default_factory=dict)
    files: tuple[Path, ...] = ()
    page: Path | None = None
    warnings: tuple[str, ...] = ()

    @property
    def verdict(self) -> Status:
        return verdict(self.verdicts)

    @property
    def exit_code(self) -> ExitCode:
        """0 every required rule passes, 1 one fails, 3 one is unknown (a target did not answer, or was never read)."""
        return {PASS: ExitCode.OK, FAIL: ExitCode.FAILURE}.get(self.verdict, ExitCode.PARTIAL)

    def to_json(self) -> dict[str, Any]:
        return {**self.document, "files": [str(p) for p in self.files], "warnings": list(self.warnings)}

    def compliance(self) -> tuple[RuleVerdict, ...]:
        return self.verdicts

    def target_results(self) -> list[TargetResult[None]]:
        """Online: whether each target answered (offline: nothing was asked)."""
        return [TargetResult(t.name, t.location, problem=None if look.reachable and not look.error else Problem(
                    look.error or "did not answer", look.hint))
                for t in self.picture.targets if (look := self.looks.get(t.name)) is not None]

    def target_facts(self) -> dict[str, dict[str, Fact]]:
        """What each answering target holds now: --offline and the metrics read it from the run record."""
        return {name: _facts(look, self.picture.databases) for name, look in self.looks.items() if look.reachable}

    def audit(self) -> AuditFacts:
        details: dict[str, Any] = {"verdict": self.verdict, "mode": self.document["mode"],
                                   "rules": {v.rule: v.status for v in self.verdicts if v.required}}
        if self.page is not None:
            details.update(report=str(self.page), report_sha256=self.document["sha256"])
        failed = [f"{v.rule}: {v.reason}" for v in self.verdicts if v.required and v.status != PASS]
        return AuditFacts(targets=tuple(t.location for t in self.picture.targets), error="; ".join(failed) or None,
                          details=details)

    def show(self, app: App) -> None:
        compliance_view.show_status(app, self.document, [str(p) for p in self.files])
        for warning in self.warnings:
            app.err.print(f"warning: {escape(warning)}")


def _status(session: Session, request: StatusRequest) -> StatusAnswer:
    now = datetime.now(UTC)
    looks = None if request.offline else look_at_targets(session, request.timeout_s or DEFAULT_TIMEOUT_S)
    found = evaluated(session.policy, session.state_dir, now, looks)
    answer = StatusAnswer(found.picture, found.verdicts, found.content, looks or {})
    return _with_files(session, answer, request)


def _with_files(session: Session, answer: StatusAnswer, request: StatusRequest) -> StatusAnswer:
    """The sealed page (kept with the other reports, and copied where asked) and the metrics file, if asked.
    A file that cannot be written is a warning: the verdict and its exit code stand."""
    files, warnings, content, page = [], [], answer.document, None
    if request.html is not None and session.visiting:
        warnings.append(f"{request.html} was not written: a page is sealed into the reports of the policy's owner, "
                        "which a reader does not write; read the pages in its reports folder instead")
    elif request.html is not None:
        from opsctl.reports import compliance, signing  # jinja2 is loaded only when a page is asked for

        report = compliance.build(content, signing.signer_or_warn(session.policy))
        json_path, html_path = compliance.write(report, session.state_dir / "reports", session.policy.report_group)
        content = report.to_json()
        files.append(json_path)
        problem = write_own(request.html, html_path.read_bytes(), _is_page)
        page = json_path if problem else request.html  # the sealed copy report verify is pointed at
        files += [] if problem else [request.html]
        warnings += [problem] if problem else []
    if request.prometheus is not None:
        problem = write_metrics(request.prometheus, answer.picture, session.state_dir, answer.verdicts)
        files += [request.prometheus] if problem is None else []
        warnings += [problem] if problem else []
    return replace(answer, document=content, files=tuple(files), page=page, warnings=tuple(warnings))


def _is_page(start: bytes) -> bool:
    """An empty file, or a compliance page opsctl wrote: the only files --html replaces."""
    if not start.strip():
        return True
    embedded = sealed.embedded_report(start.decode("utf-8", "replace"))
    return isinstance(embedded, dict) and embedded.get("format") == document.FORMAT


def look_at_targets(session: Session, timeout_s: float) -> dict[str, Look]:
    """Every target's answer, asked all at once; one that has not answered within timeout_s is unreachable."""
    restic = session.restic.answering_within(timeout_s)
    _ = session.repository_password, restic.version  # read once, here, not by each thread
    answers: dict[str, Look] = {}
    known_keys = _known_keys(session)
    threads = [_asking(answers, config.name, partial(_look, session, restic, known_keys, config))
               for config in session.policy.targets]
    deadline = time.monotonic() + timeout_s
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    late = Look(False, f"did not answer within {timeout_s:.0f} s", "check that the target is up and reachable from "
                                                                   "this host; opsctl status --timeout gives it longer")
    return {config.name: answers.get(config.name, late) for config in session.policy.targets}


def _known_keys(session: Session) -> dict[str, str]:
    """Per target, the ID of opsctl's key as `keys status` last found it."""
    record = runs.read(session.state_dir, "keys status")
    return {t.target: key for t in (record.targets if record else ()) if isinstance(key := t.facts.get("key_id"), str)}


def _asking(answers: dict[str, Look], name: str, ask: Callable[[], Look]) -> threading.Thread:
    """A daemon thread: one that hangs past the deadline is left behind, never waited for at exit."""
    def run() -> None:
        answers[name] = ask()

    thread = threading.Thread(target=run, name=f"status {name}", daemon=True)
    thread.start()
    return thread


def _look(session: Session, restic: Restic, known_keys: dict[str, str], config: TargetConfig) -> Look:
    try:
        target = session.target(config)
        target.probe()
        repo = session.repository(target)
        snapshots = restic.snapshots(repo, ["opsctl", f"policy={session.policy.name}"])
        key_created = _key_created(target, known_keys.get(config.name))
        newest = {db: s for s in snapshots if (db := s.tag("db"))}  # oldest first: the last one per database wins
        lock = target.immutability(snapshots[-1].id if snapshots else None)
    except (WrongPassword, HostileTarget) as exc:  # it answered: nothing of ours is there
        return Look(True, exc.message, exc.hint, snapshots=0)
    except RepositoryNotFound as exc:  # restic says so for any failure to read the config: look for it
        return Look(True, exc.message, exc.hint, snapshots=0) if _no_config(target) else Look(
            False, exc.message, exc.hint)
    except Exception as exc:  # noqa: BLE001 - a target that cannot answer is that target's row
        failure = exc if isinstance(exc, OpsctlError) else as_operator_error(exc, config.name)
        return Look(False, failure.message, failure.hint)
    # To the second, as every run records a snapshot's time: the same snapshot must not look newer here.
    return Look(True, snapshots=len(snapshots), newest={db: s.time.replace(microsecond=0) for db, s in newest.items()},
                key_created=key_created, **_lock_facts(lock))


def _no_config(target: Target) -> bool:
    """The target answers a listing, and holds no repository config: restic's "no repository" is an answer."""
    try:
        with target.files() as files:
            return not files.exists("config")
    except Exception:  # noqa: BLE001 - it does not answer this either: unknown, not empty
        return False


def _key_created(target: Target, known_id: str | None) -> datetime | None:
    """When opsctl's key on the target was made, from the key files themselves (`restic key list` would lock the
    repository, a write). With several keys, opsctl's is the one `keys status` last named; else unknown."""
    try:
        with target.files() as files:
            names = sorted(name for name in files.list("keys") if name.count("/") == 1)
            mine = next((name for name in names if known_id and name == f"keys/{known_id}"), None)
            if mine is None and len(names) == 1:
                mine = names[0]
            return None if mine is None else key_file_created(files.read(mine))
    except Exception:  # noqa: BLE001 - the snapshots answered; only the key's age stays unknown
        return None


def _lock_facts(lock: Immutability | None) -> dict[str, Any]:
    """Storage without a lock is not locked; a lock that could not be read is not known (None)."""
    if lock is None:
        return {"locked": False}
    return {"locked": lock.locked if lock.known else None, "lock_detail": lock.detail, "lock_hint": lock.hint,
            "locked_until": lock.until}


def _facts(look: Look, databases: tuple[str, ...]) -> dict[str, Fact]:
    """Every fact an answer restates, a database without snapshots there included (as null): it replaces the last."""
    return {**{runs.SNAPSHOT + db: iso(look.newest.get(db)) for db in databases},
            "snapshots": look.snapshots, "key_created": iso(look.key_created), "locked": look.locked,
            "lock_detail": look.lock_detail, "lock_hint": look.lock_hint, "locked_until": iso(look.locked_until)}


def _precheck(_: App, request: StatusRequest) -> None:
    if request.offline and request.timeout_s is not None:
        raise BadInput("--timeout has no use with --offline: nothing is asked", "give one of them")
    for option, path, suffixes, ours in (("--html", request.html, (".html", ".htm"), _is_page),
                                         ("--prometheus", request.prometheus, (".prom",), is_metrics)):
        if path is not None:
            check_output_file(option, path, suffixes, ours)


STATUS = Command("status", _status, restic=True, secrets=Secrets.REPOSITORY, precheck=_precheck)
# Reads the run record and writes nothing, so an auditor (in the policy's report_group) may run it on the
# operator's policy and state: no secret, no network, no record of its own.
STATUS_OFFLINE = Command("status", _status, precheck=_precheck, access=Access.READ)
