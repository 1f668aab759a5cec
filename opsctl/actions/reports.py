"""opsctl report verify / list: check a verification, drill or compliance report, list past verifications.

A report is checked one of two ways. With its policy: it must match its SHA-256 and the policy's
audit trail must have recorded that hash (a signature, when it has one, is checked with the
policy's own key). With `--public-key`, an auditor's check on any machine: no policy, no secret,
no state folder, no network; only a report signed by that key is VALID, and `--audit-trail` adds
a copy of the trail, whose hash chain must hold and which must have recorded the report (else
NOT RECORDED or TRAIL BROKEN). The chain has no key: it proves order and completeness only
against the copies kept on the targets (`opsctl audit verify --against TARGET`).

Every file given is refused unless it is a regular file of a sane size, so a FIFO or a device
cannot hang the check or fill its memory; whatever a file or its name holds reaches the terminal
only with its control characters escaped (`console.printable`).
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from opsctl import audit
from opsctl.actions.context import App, Session
from opsctl.actions.outcome import AuditFacts, Outcome
from opsctl.actions.runner import Command
from opsctl.errors import BadInput, ExitCode
from opsctl.reports import console, sealed, signing, verification
from opsctl.reports.sealed import ReportCheck, Unreadable
from opsctl.reports.signing import PublicKey, SignatureCheck, SigningKeyUnusable, Verdict

# A PEM public key is a few hundred bytes; anything larger is not one, and is never read into memory whole.
_KEY_MAX_BYTES = 16 << 10
_HEAD_MAX_BYTES = 64 << 10
_REPORT_HINT = ("give the path of a report: opsctl report list shows verifications, opsctl drill --history shows "
                "drills, and compliance pages are kept in the state folder's reports/")
_NOT_A_REPORT_HINT = ("give a report's .json or .html file exactly as opsctl wrote it (copied as bytes, never re-saved "
                      "or converted): opsctl report list shows verifications, opsctl drill --history shows drills, "
                      "and compliance pages are kept in the state folder's reports/")
_KEY_HINT = ("give the report signing public key (a PEM file) obtained from the operator of the backup host, who "
             "prints it with: opsctl keys signing init")
_TRAIL_HINT = "give a copy of the policy's audit.jsonl (from its state folder), with its audit.jsonl.head next to it"


@dataclass(frozen=True)
class ReportVerifyRequest:
    """The report to check; with `public_key`, the auditor's check (and `audit_trail`, a copy of the trail)."""

    file: Path
    public_key: Path | None = None
    audit_trail: Path | None = None


@dataclass(frozen=True)
class ReportChecked(Outcome):
    """Whether a report is as opsctl wrote it, whether its signature holds, and whether an audit trail recorded it."""

    check: ReportCheck

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.OK if self.check.intact else ExitCode.FAILURE

    def to_json(self) -> dict[str, Any]:
        return {"file": str(self.check.path), "intact": self.check.intact, "audit_trail": self.check.audit,
                "signature": self.check.signature, "key_id": self.check.key_id, "message": self.check.message,
                "verdict": console.check_word(self.check.message)}

    def audit(self) -> AuditFacts:
        return AuditFacts(error=None if self.check.intact else self.check.message,
                          details={"file": str(self.check.path), "intact": self.check.intact,
                                   "signature": self.check.signature})

    def show(self, app: App) -> None:
        console.show_report_check(app, self.check)


def _check_report(session: Session, request: ReportVerifyRequest) -> ReportChecked:
    """Intact only when the file is as opsctl wrote it and the policy's audit trail records it."""
    result = _unsealed(request.file)
    if result.intact:
        result = _against_audit_trail(session, result)
    if result.intact:
        result = _against_policy_key(session, result)
    return ReportChecked(result)


def _unsealed(path: Path) -> ReportCheck:
    """The file checked against its own SHA-256; a file that is no report at all is refused calmly (exit 2)."""
    _regular_file(path, _REPORT_HINT)
    checked = sealed.check_file(path)
    if not checked.is_report:
        raise BadInput(console.printable(checked.message), _NOT_A_REPORT_HINT)
    return checked


def _regular_file(path: Path, hint: str, noun: str = "file") -> None:
    """Refuse, before anything opens it, a path that is missing or is not a regular file (a FIFO would hang)."""
    try:
        info = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise BadInput(f"there is no {noun} {_shown(path)}", hint) from None
    except OSError as exc:  # e.g. a name longer than the system allows
        raise BadInput(f"cannot look at the {noun} {_shown(path)}: {exc.strerror or exc.__class__.__name__}",
                       hint) from None
    if not stat.S_ISREG(info.st_mode):
        raise BadInput(f"the {noun} {_shown(path)} is not a regular file (it is a folder, a FIFO or a device)", hint)


def _shown(path: Path) -> str:
    """A path as an error quotes it: a name can never move the terminal's cursor or fake a line of output."""
    return console.printable(str(path))


def _no_policy(request: ReportVerifyRequest) -> ReportChecked:
    """Without the policy that wrote it, a report can be found altered, never proven intact."""
    checked = _unsealed(request.file)
    if not checked.intact:
        return ReportChecked(checked)
    raise BadInput(f"{_shown(request.file)} matches its own SHA-256, but whoever edits a report can recompute that: "
                   "only the audit trail of the policy that wrote it, or the public key that signed it, can tell "
                   "whether it was altered",
                   "run: opsctl --policy FILE report verify REPORT (FILE: the policy that wrote the report), or "
                   "opsctl report verify REPORT --public-key KEY (KEY: the report signing public key obtained from "
                   "the backup host's operator, never a key file that came with the report)")


def _audit_trail_needs_a_key(_: App, request: ReportVerifyRequest) -> None:
    if request.audit_trail is not None and request.public_key is None:
        raise BadInput("--audit-trail is for the check with --public-key",
                       "add --public-key KEY, or leave --audit-trail out: without a key, report verify reads the "
                       "policy's own audit trail")


def _against_audit_trail(session: Session, result: ReportCheck) -> ReportCheck:
    """The report's hash must be one the policy's own runs recorded: a recomputed hash is not."""
    trail = audit.trail_path(session.state_dir)
    try:
        entries = audit.read(trail)
    except OSError as exc:
        raise BadInput(f"cannot read the audit trail {trail} ({exc.strerror or exc.__class__.__name__})",
                       "run report verify as the user that runs the backups: the trail is private to it") from None
    entry = _recording(entries, result)
    if entry is None:
        return replace(result, intact=False, audit="not recorded", message=(
            f"ALTERED or foreign: {result.path} matches its own SHA-256, but no run in the audit trail {trail} "
            f"recorded that SHA-256 with the verdict {result.verdict}. It was edited and re-hashed, or another policy "
            "or host wrote it (check it with that policy's --policy), or the trail lost that run's line "
            "(truncated or replaced: the run then warned that it could not write it)"))
    return replace(result, audit="recorded", message=f"{result.message}; the audit trail recorded it "
                                                     f"({entry.command} on {entry.time} by {entry.user}@{entry.host})")


def _recording(entries: Iterable[audit.AuditEntry], result: ReportCheck) -> audit.AuditEntry | None:
    """The newest run that recorded this report's hash with its verdict."""
    return next((e for e in reversed(list(entries)) if e.details.get("report_sha256") == result.sha256
                 and e.details.get("verdict") == result.verdict), None)


def _against_policy_key(session: Session, result: ReportCheck) -> ReportCheck:
    """A signed report is checked with the policy's own key, never with the public key it carries itself."""
    report = result.report or {}
    if "signature" not in report:  # written before reports were signed: checked as it always was
        return result
    if report["signature"] is None:
        return replace(result, signature=Verdict.UNSIGNED.value, message=f"{result.message}; unsigned (hash only)")
    key_id = signing.named_key(report["signature"])
    if key_id is None:  # opsctl never writes such a field, key or no key to check it with
        return replace(result, intact=False, signature=Verdict.ALTERED.value,
                       message=f"{_altered(result.path, SignatureCheck(Verdict.ALTERED))} (the audit trail did "
                               "record its content)")
    return _with_policy_key(session, result, report["signature"], key_id)


def _with_policy_key(session: Session, result: ReportCheck, signature: object, key_id: str) -> ReportCheck:
    """The signature checked with the policy's own key, when this host has it."""
    key, why = _policy_key(session)
    if key is None:
        return _not_checked(result, key_id, why)
    checked = signing.check_signature(signature, result.sha256 or "", key)
    if checked.verdict is Verdict.WRONG_KEY:
        return _not_checked(result, key_id, f"it names key {key_id}, not this policy's key {key.key_id}")
    if checked.verdict is Verdict.VALID:
        return replace(result, signature=checked.verdict.value, key_id=checked.key_id,
                       message=f"{result.message}; signed with this policy's key {checked.key_id}")
    return replace(result, intact=False, signature=checked.verdict.value, key_id=checked.key_id,
                   message=f"{_altered(result.path, checked)} (the audit trail did record its content)")


def _policy_key(session: Session) -> tuple[PublicKey | None, str]:
    """The public half of the policy's signing key, or why there is none to check with."""
    try:
        signer = signing.find_signer(session.policy)
    except SigningKeyUnusable as exc:
        return None, f"this policy's signing key cannot be used ({exc.message})"
    except RuntimeError as exc:  # no home folder to find the default key in (HOME unset, no passwd entry)
        return None, f"this policy's signing key cannot be found ({exc})"
    if signer is None:
        return None, "this policy has no signing key on this host"
    return signer.public, ""


def _not_checked(result: ReportCheck, key_id: str, why: str) -> ReportCheck:
    return replace(result, key_id=key_id, message=f"{result.message}; its signature was not checked: {why} (an "
                                                  f"auditor checks it with --public-key KEY, KEY being the public key "
                                                  f"of key {key_id} obtained from the operator)")


def _check_signed(request: ReportVerifyRequest) -> ReportChecked:
    """The auditor's check: VALID only when the report is as written and signed by the given key."""
    if request.public_key is None:  # the CLI picks this command only with --public-key
        raise BadInput("no public key given", "pass --public-key KEY")
    key = _public_key(request.public_key)
    result = _signed(_unsealed(request.file), key)
    if result.intact and request.audit_trail is not None:
        result = _against_chain(result, request.audit_trail)
    return ReportChecked(result)


def _public_key(path: Path) -> PublicKey:
    """The auditor's key: a PEM public key file, obtained from the backup host's operator."""
    _regular_file(path, _KEY_HINT, "public key file")
    try:
        data = sealed.read_regular(path, _KEY_MAX_BYTES)
    except Unreadable as exc:
        raise BadInput(f"the public key {_shown(path)} {exc}", _KEY_HINT) from None
    if b"PRIVATE KEY" in data:  # never echoed: say what it is, and nothing of what it holds
        raise BadInput(f"{_shown(path)} is a private key, which must never leave the backup host",
                       f"{_KEY_HINT}; if the private key was copied here, delete that copy")
    try:
        return PublicKey.from_pem(data)
    except ValueError:
        raise BadInput(f"{_shown(path)} is not an Ed25519 public key in PEM form", _KEY_HINT) from None


def _signed(result: ReportCheck, key: PublicKey) -> ReportCheck:
    """The verdict of a report's signature against the auditor's key."""
    if not result.intact:
        message = result.message if result.message.startswith("ALTERED") else f"ALTERED: {result.message}"
        return replace(result, signature=Verdict.ALTERED.value, message=message)
    report = result.report or {}
    checked = signing.check_signature(report.get("signature"), result.sha256 or "", key)
    return replace(result, intact=checked.verdict is Verdict.VALID, signature=checked.verdict.value,
                   key_id=checked.key_id, message=_signed_message(result, report, checked, key))


def _signed_message(result: ReportCheck, report: dict[str, Any], checked: SignatureCheck, key: PublicKey) -> str:
    path = result.path
    if checked.verdict is Verdict.VALID:
        return (f"VALID: {path} is as opsctl wrote it, signed with key {checked.key_id} by "
                f"{report.get('user')}@{report.get('host')} at {report.get('finished_at')} "
                f"(verdict {result.verdict}).")
    if checked.verdict is Verdict.UNSIGNED:
        return (f"UNSIGNED: {path} is unsigned (hash only): anyone who edits a report can recompute its SHA-256, so "
                "no key vouches for it; check it on the backup host with opsctl --policy FILE report verify REPORT.")
    if checked.verdict is Verdict.WRONG_KEY:
        return (f"WRONG KEY: {path} is signed with key {checked.key_id}, not with the given key {key.key_id}; "
                f"if key {checked.key_id} is the backup host's, ask its operator for that public key and check again "
                "with it (never with a key file that came with the report).")
    return _altered(path, checked)


def _altered(path: Path, checked: SignatureCheck) -> str:
    if checked.key_id is None:
        return f"ALTERED: the signature in {path} is damaged, so it was changed after opsctl wrote it."
    return (f"ALTERED: {path} names key {checked.key_id}, but its signature does not verify with that key: it was "
            "changed after it was signed.")


def _against_chain(result: ReportCheck, trail: Path) -> ReportCheck:
    """The trail copy's hash chain must hold, and one of its runs must have recorded this report."""
    from opsctl.audit import chain

    head = chain.head_path(trail)
    _regular_file(trail, _TRAIL_HINT, "audit trail file")
    if os.path.lexists(head):  # the chain checker reads it too: never a FIFO or a device
        _regular_file(head, f"remove {_shown(head)} or put the trail's own .head file there; {_TRAIL_HINT}",
                      "audit trail's head file")
    try:
        checked = chain.check(trail)
    except OSError as exc:
        raise BadInput(f"cannot read the audit trail {_shown(trail)} ({exc.strerror or exc.__class__.__name__})",
                       _TRAIL_HINT) from None
    signed = result.message.removeprefix("VALID: ")
    if not checked.intact:
        return replace(result, intact=False, audit="broken", message=(
            f"TRAIL BROKEN: {signed} But the audit trail {trail} is broken, so it vouches for nothing: "
            f"{checked.problem}."))
    entry = _recording(checked.entries, result)
    if entry is None:
        return replace(result, intact=False, audit="not recorded", message=(
            f"NOT RECORDED: {signed} But no run in the audit trail {trail} recorded SHA-256 {result.sha256} with the "
            f"verdict {result.verdict}: it is another policy's or host's trail, or an older copy of it."))
    return replace(result, audit="recorded", message=(
        f"{result.message} The audit trail {trail}'s chain is unbroken{_head_caveat(head, checked.chain_id)} and it "
        f"recorded this report ({entry.command} on {entry.time} by {entry.user}@{entry.host}); the chain has no key, "
        "so it proves order and completeness only against the copies kept on the targets: opsctl audit verify "
        "--against TARGET."))


def _head_caveat(head: Path, chain_id: str | None) -> str:
    """What the trail's newest lines rest on: its .head file, when it names this chain; else nothing."""
    try:
        data = json.loads(sealed.read_regular(head, _HEAD_MAX_BYTES))
    except (Unreadable, ValueError, RecursionError):
        data = None
    if isinstance(data, dict) and chain_id is not None and data.get("chain") == chain_id:
        return " up to the newest line its .head file records"
    return (f" as far as it goes (no .head file of this chain was next to it, {head.name}, so its last lines could "
            "have been cut, or its last line edited, unnoticed)")


@dataclass(frozen=True)
class ReportList(Outcome):
    reports: tuple[verification.PastVerification, ...]

    def show(self, app: App) -> None:
        console.show_report_list(app, list(self.reports))


def _list_reports(session: Session, _: None) -> ReportList:
    return ReportList(tuple(verification.list_reports(session.state_dir / "reports")))


def _signed_with_policy(_: Session, request: ReportVerifyRequest) -> ReportChecked:
    """Never called: the runner runs a standalone command without a policy; the same check if it ever were."""
    return _check_signed(request)


REPORT_VERIFY = Command("report verify", _check_report, without_policy=_no_policy, precheck=_audit_trail_needs_a_key)
REPORT_VERIFY_SIGNED = Command("report verify", _signed_with_policy, standalone=_check_signed)
REPORT_LIST = Command("report list", _list_reports)
