"""Tamper-evident reports: each run writes one JSON and one self-contained HTML file carrying the SHA-256 of its
content, and an Ed25519 signature of that hash when the policy has a signing key.

The content is canonical JSON (sorted keys, no spaces, UTF-8) of everything but `sha256` and
`signature`. The JSON file is the content plus both, in exactly one spelling (`json_text`); the
HTML file embeds the same JSON and is exactly what its renderer makes of it. `opsctl report verify`
compares each file byte for byte with that, so it finds any change to either file, also one that
leaves the parsed content and so the hash as it was (a repeated key, an escape, a number's form).
Anyone can recompute that hash, so `report verify` also looks the hash up in the policy's audit
trail, where the run that wrote the report recorded it, and an auditor checks the signature with
the public key alone (`opsctl.reports.signing`).
"""

from __future__ import annotations

import errno
import functools
import grp
import hashlib
import importlib
import json
import logging
import os
import pwd
import re
import socket
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opsctl import __version__
from opsctl.policy import trust

if TYPE_CHECKING:
    import jinja2

    from opsctl.reports.signing import Signer

log = logging.getLogger(__name__)
PASSED, FAILED = "PASSED", "FAILED"
# Outside the hashed content: the hash itself, and the signature over it.
_UNHASHED = ("sha256", "signature")
_KEY_ID = re.compile(r"[0-9a-f]{16}")
# Far above any report opsctl writes; a larger file is not read into memory at all.
REPORT_MAX_BYTES = 64 << 20
_EMBEDDED = re.compile(r'<script type="application/json" id="opsctl-report">(.*?)</script>', re.DOTALL)
# Format -> (module with render_html, what the report is called). Modules are imported on use because
# they import this one.
_KINDS = {"opsctl-verification/1": ("opsctl.reports.verification", "verification"),
          "opsctl-drill/1": ("opsctl.reports.drill", "drill"),
          "opsctl-compliance/1": ("opsctl.reports.compliance", "compliance")}


@dataclass(frozen=True)
class ReportCheck:
    """What `opsctl report verify` found about one file."""

    path: Path
    intact: bool
    message: str
    sha256: str | None = None
    """The report's own SHA-256, once its content was found to match it."""
    verdict: str | None = None
    audit: str = "not checked"
    """Against an audit trail: "recorded", "not recorded", "broken" or "not checked"."""
    signature: str = "not checked"
    """VALID, ALTERED, UNSIGNED, WRONG KEY (see opsctl.reports.signing.Verdict) or "not checked"."""
    key_id: str | None = None
    """The signing key the report names, if it names one."""
    report: dict[str, Any] | None = field(default=None, repr=False, compare=False)
    """The report as read, once its content was found to match its SHA-256."""
    is_report: bool = True
    """False when the file could not be read as an opsctl report at all (unreadable, binary, not a report):
    nothing to call altered or intact, so report verify refuses it (exit 2)."""


class Unreadable(Exception):
    """A file that cannot be used: not a regular file, too large, or unreadable; the message says which."""


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def host() -> str:
    return socket.gethostname()


def user() -> str:
    """The account that runs opsctl, from its uid ($LOGNAME, which getpass trusts, is anyone's to set)."""
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return "unknown"


def content_sha256(content: dict[str, Any]) -> str:
    """The SHA-256 of the canonical form of `content` (a report without its `sha256` and `signature`)."""
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(canonical).hexdigest()


def stamp(content: dict[str, Any]) -> dict[str, Any]:
    """The content plus when, where, by whom and with which opsctl the report was made."""
    return {**content, "finished_at": now(), "host": host(), "user": user(), "opsctl_version": __version__}


def hashed_content(report: dict[str, Any]) -> dict[str, Any]:
    """The part of a report its SHA-256 covers: all of it but the hash and the signature."""
    return {k: v for k, v in report.items() if k not in _UNHASHED}


def seal(content: dict[str, Any]) -> dict[str, Any]:
    """The report: the content plus the SHA-256 of its canonical form."""
    return {**content, "sha256": content_sha256(hashed_content(content))}


def sign(report: dict[str, Any], signer: Signer | None) -> dict[str, Any]:
    """The sealed report with its `signature`: null when there is no key, so its page says "not signed"."""
    return {**report, "signature": None if signer is None else signer.sign(report["sha256"])}


def signature_label(report: dict[str, Any]) -> str | None:
    """What a page says about the signature; None for a report made before signatures (its page stays as it was)."""
    if "signature" not in report:
        return None
    signature = report["signature"]
    if signature is None:
        return "not signed"
    key_id = signature.get("key_id") if isinstance(signature, dict) else None
    if not is_key_id(key_id):
        return "damaged"
    return (f"Ed25519, key {key_id} (an auditor checks it with: opsctl report verify FILE --public-key KEY, KEY "
            "being the public key obtained from the operator)")


def is_key_id(value: object) -> bool:
    """Whether `value` has the form of a key ID (16 lowercase hex digits): nothing else is ever shown as one."""
    return isinstance(value, str) and _KEY_ID.fullmatch(value) is not None


@dataclass(frozen=True)
class ReportAccess:
    """Who may read the reports: the folder's and the files' modes, and their group (-1: the owner's, unchanged)."""

    folder_mode: int
    file_mode: int
    gid: int = -1
    settled: bool = False
    """True once a mode or group could not be set (and was warned about): files are then left as created, 0600."""


_PRIVATE = ReportAccess(0o700, 0o600)
_AS_CREATED = ReportAccess(0o700, 0o600, settled=True)


def write_pair(report: dict[str, Any], folder: Path, kind: str, label: str,
               render_html: Callable[[dict[str, Any]], str], *, group: str | None = None) -> tuple[Path, Path]:
    """`{kind}-{stamp}-{label}-{sha8}.json` and `.html`, 0640, in a folder only the owner (and `group`, the
    policy's report_group) may read; returns (json, html)."""
    access = report_folder(folder, group)
    stamp = report["finished_at"].replace(":", "").replace("-", "").replace("+0000", "Z")
    base = folder / f"{kind}-{stamp}-{_safe(label)}-{report['sha256'][:8]}"
    json_path, html_path = base.with_suffix(".json"), base.with_suffix(".html")
    access = _write(json_path, json_text(report), access)
    _write(html_path, render_html(report), access)
    return json_path, html_path


def json_text(report: dict[str, Any]) -> str:
    """The JSON file's exact text: `report verify` accepts a JSON report only in this form."""
    return json.dumps(report, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def report_folder(folder: Path, group: str | None) -> ReportAccess:
    """Make the reports folder 0700, or 0750 with `group`. A mode or group that cannot be set is warned about
    once, and the reports are then written private (0600): never a reason to lose one."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    access = _access(group)
    try:
        fd = _open_folder(folder)
    except OSError as exc:
        return _left_private(folder, exc.strerror or exc.__class__.__name__)
    if fd is None:
        return _left_private(folder, "it is a link owned, or pointing to a folder owned, by another user")
    try:
        return _set_folder(fd, folder, access, group)
    finally:
        os.close(fd)


def _open_folder(folder: Path) -> int | None:
    """The folder, opened; through a link (another disk, say) only when the link and the folder it points to
    belong to this user or root, else None: then opsctl changes nothing about it."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
    try:
        return os.open(folder, flags | os.O_NOFOLLOW)
    except OSError:
        if not folder.is_symlink():
            raise
    fd = os.open(folder, flags)
    if _trusted(os.lstat(folder).st_uid) and _trusted(os.fstat(fd).st_uid):
        return fd
    os.close(fd)
    return None


def _trusted(uid: int) -> bool:
    return uid in (os.geteuid(), 0)


def _set_folder(fd: int, folder: Path, access: ReportAccess, group: str | None) -> ReportAccess:
    """The folder given to the reports' group and its mode; private (warned about) when that cannot be done."""
    try:
        if access.gid != -1:
            try:
                os.fchown(fd, -1, access.gid)
            except PermissionError:
                if os.fstat(fd).st_uid != os.geteuid():
                    raise  # not ours: no group would do, say so below
                log.warning("cannot give the reports to group %s (%s is not a member): they stay readable by %s "
                            "alone. What to do: run opsctl as root or as a member of %s", group, user(), user(), group)
                access = _PRIVATE
        os.fchmod(fd, access.folder_mode)
    except OSError as exc:
        return _left_private(folder, exc.strerror or exc.__class__.__name__)
    return access


def _left_private(folder: Path, why: str) -> ReportAccess:
    log.warning("cannot set the mode or group of the reports folder %s (%s): opsctl leaves it as it is and writes "
                "the reports readable by %s alone. What to do: make %s (and the folder it links to, if it is a link) "
                "belong to %s", folder, why, user(), folder, user())
    return _AS_CREATED


def _access(group: str | None) -> ReportAccess:
    """0640 files in a 0700 folder; shared with `group` (0750) when it exists, private (0600) when it does not."""
    if group is None:
        return ReportAccess(0o700, 0o640)
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        log.warning("the policy's report_group %s does not exist on this host: the reports stay readable by %s "
                    "alone. What to do: create the group (groupadd %s), or fix report_group in the policy",
                    group, user(), group)
        return _PRIVATE
    return ReportAccess(0o750, 0o640, gid)


def _write(path: Path, text: str, access: ReportAccess) -> ReportAccess:
    """Written through no link, created private, then given to the reports' group and its mode; returns the
    access the next file gets (private, once a mode or group could not be set)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
        access = _give(fd, path, access)
        handle.write(text)
    return access


def _give(fd: int, path: Path, access: ReportAccess) -> ReportAccess:
    """The file's group and mode; on a filesystem or folder that refuses them, private, warned about once."""
    if access.settled:
        with suppress(OSError):  # already warned; an existing file being replaced must not stay readable
            os.fchmod(fd, 0o600)
        return access
    try:
        if access.gid != -1:
            os.fchown(fd, -1, access.gid)
        os.fchmod(fd, access.file_mode)
    except OSError as exc:
        log.warning("cannot set the mode or group of %s (%s): the reports are written readable by %s alone. What "
                    "to do: keep the reports on a filesystem that keeps modes and groups", path,
                    exc.strerror or exc.__class__.__name__, user())
        with suppress(OSError):
            os.fchmod(fd, 0o600)
        return _AS_CREATED
    return access


def embed(report: dict[str, Any]) -> str:
    """The report as JSON that is safe inside the page's `<script>` element."""
    return json.dumps(report, sort_keys=True, ensure_ascii=False).replace("</", "<\\/")


def template(name: str) -> jinja2.Template:
    return _templates().get_template(name)


@functools.cache
def _templates() -> jinja2.Environment:
    """One environment per process, so each template is compiled once (jinja2 is loaded only when a page is made)."""
    import jinja2

    return jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
                              autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


def check_file(path: Path) -> ReportCheck:
    """Whether a report file (JSON or HTML: verification, drill or compliance) is byte for byte as opsctl wrote it."""
    try:
        text = _report_text(path)
    except Unreadable as exc:
        return _not_a_report(path, f"{path} {exc}")
    page = path.suffix.lower() in (".html", ".htm")
    embedded = _embedded_text(text) if page else text
    report, oddity = parse(embedded)
    kind = _KINDS.get(report["format"]) if isinstance(report, dict) and isinstance(report.get("format"), str) \
        else None
    if kind is None and page and embedded is not None:  # an opsctl page whose report was damaged
        return ReportCheck(path, False, f"ALTERED: the report embedded in the page {path} is damaged")
    if kind is None:
        return _not_a_report(path, f"{path} is not an opsctl report (or it was damaged beyond reading)")
    if oddity is not None:
        return ReportCheck(path, False, f"ALTERED: {path} holds {oddity}, which opsctl never writes: it was edited")
    return _hashed(path, text, report, kind, page)


def _hashed(path: Path, text: str, report: dict[str, Any], kind: tuple[str, str], page: bool) -> ReportCheck:
    """The content must match the report's SHA-256, and the file must be exactly what opsctl writes for it."""
    digest = _digest(hashed_content(report)) if isinstance(report.get("sha256"), str) else None
    if digest is None:
        return ReportCheck(path, False, f"ALTERED: {path} is a damaged opsctl report: it has no usable SHA-256")
    if digest != report["sha256"]:
        return ReportCheck(path, False, f"ALTERED: the content of {path} does not match its SHA-256")
    return _as_written(path, text, report, kind, page)


def _as_written(path: Path, text: str, report: dict[str, Any], kind: tuple[str, str], page: bool) -> ReportCheck:
    """Intact only when the file's text is exactly what opsctl writes for this report: the hash covers the parsed
    content, so a re-encoding (escapes, number forms, spacing, line ends) must be caught here."""
    module, noun = kind
    if page and _rendered(module, report) != text:
        return ReportCheck(path, False, f"ALTERED: the page {path} differs from what its embedded report renders")
    if not page and json_text(report) != text:
        return ReportCheck(path, False, f"ALTERED: {path} is not exactly as opsctl writes this report: its JSON was "
                                        "edited or re-encoded (escapes, number forms, spacing or line ends differ)")
    # Verification keeps its original wording: scripts may already match on it.
    verdict = "verdict" if noun == "verification" else f"{noun} verdict"
    return ReportCheck(path, True, f"intact: {path} is as opsctl wrote it ({verdict} {report.get('verdict')}, "
                                   f"SHA-256 {report['sha256']})", report["sha256"], report.get("verdict"),
                       report=report)


def _report_text(path: Path) -> str:
    """The file's text exactly as stored (no newline translation: a page whose line ends changed is not intact)."""
    try:
        return read_regular(path, REPORT_MAX_BYTES).decode("utf-8")
    except UnicodeDecodeError:
        raise Unreadable("is not an opsctl report: it is not UTF-8 text (a binary file?)") from None


def _not_a_report(path: Path, message: str) -> ReportCheck:
    return ReportCheck(path, False, message, is_report=False)


def read_regular(path: Path, limit: int) -> bytes:
    """The bytes of a regular file of at most `limit` bytes, else Unreadable saying why: a FIFO or device given
    by mistake (or malice) is refused instead of hanging or filling memory."""
    try:
        return trust.read_regular(path, limit, follow=True)  # a path the auditor gave: their links are theirs
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            raise Unreadable("is not a regular file (it is a folder, a FIFO or a device)") from None
        if exc.errno == errno.EFBIG:
            raise Unreadable(f"is {exc.strerror}") from None
        raise Unreadable(f"cannot be read ({exc.strerror or exc.__class__.__name__})") from None


def _digest(content: dict[str, Any]) -> str | None:
    """The content's SHA-256; None when it has no canonical form (opsctl never writes such a report)."""
    try:
        return content_sha256(content)
    except (UnicodeEncodeError, RecursionError):  # a lone surrogate such as "\ud800" has no UTF-8 form
        return None


def _rendered(module: str, report: dict[str, Any]) -> str | None:
    """The page opsctl makes of a report; None when the report lacks what a page needs (it was not opsctl's)."""
    try:
        page: str = importlib.import_module(module).render_html(report)
    except Exception:  # noqa: BLE001 - a hand-made report can break the template in any way
        return None
    return page


def embedded_report(text: str) -> Any:
    return loads(_embedded_text(text))


def _embedded_text(text: str) -> str | None:
    match = _EMBEDDED.search(text)
    return match.group(1) if match else None


def loads(text: str | None) -> Any:
    """The JSON document in `text`; None when it is not JSON or holds what opsctl never writes (see `parse`)."""
    document, oddity = parse(text)
    return None if oddity is not None else document


def parse(text: str | None) -> tuple[Any, str | None]:
    """The JSON document in `text` (None when it is not JSON), and the first thing in it opsctl never writes: a
    key twice in one object (a reader could take either value), or NaN/Infinity."""
    oddities: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        for key, _ in items:
            if key in seen:
                oddities.append(f"the key {json.dumps(key)[:80]} twice in one object")
            seen.add(key)
        return dict(items)

    def constant(name: str) -> None:
        oddities.append(f"the non-number {name}")

    if text is None:
        return None, None
    try:
        document = json.loads(text, object_pairs_hook=pairs, parse_constant=constant)
    except (ValueError, RecursionError):  # not JSON, or nested deeper than Python's stack (a crafted file)
        return None, None
    return document, (oddities[0] if oddities else None)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:40]
