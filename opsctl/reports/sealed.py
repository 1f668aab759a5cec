"""Tamper-evident reports: each run writes one JSON and one self-contained HTML file carrying the SHA-256 of its
content.

The content is canonical JSON (sorted keys, no spaces, UTF-8). The JSON file is the content plus
`sha256`; the HTML file embeds the same JSON and is exactly what its renderer makes of it, so
`opsctl report verify` finds any change to either file that leaves the hash as it was. Anyone can
recompute that hash, so `report verify` also looks the hash up in the policy's audit trail, where
the run that wrote the report recorded it: a forger would have to change that trail too.
"""

from __future__ import annotations

import functools
import getpass
import hashlib
import importlib
import json
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opsctl import __version__

if TYPE_CHECKING:
    import jinja2

PASSED, FAILED = "PASSED", "FAILED"
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
    """Against the policy's audit trail: "recorded", "not recorded" or "not checked"."""


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def host() -> str:
    return socket.gethostname()


def user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def content_sha256(content: dict[str, Any]) -> str:
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(canonical).hexdigest()


def stamp(content: dict[str, Any]) -> dict[str, Any]:
    """The content plus when, where, by whom and with which opsctl the report was made."""
    return {**content, "finished_at": now(), "host": host(), "user": user(), "opsctl_version": __version__}


def seal(content: dict[str, Any]) -> dict[str, Any]:
    """The report: the content plus the SHA-256 of its canonical form."""
    return {**content, "sha256": content_sha256(content)}


def write_pair(report: dict[str, Any], folder: Path, kind: str, label: str,
               render_html: Callable[[dict[str, Any]], str]) -> tuple[Path, Path]:
    """`{kind}-{stamp}-{label}-{sha8}.json` and `.html` in a private folder; returns (json, html)."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    stamp = report["finished_at"].replace(":", "").replace("-", "").replace("+0000", "Z")
    base = folder / f"{kind}-{stamp}-{_safe(label)}-{report['sha256'][:8]}"
    json_path, html_path = base.with_suffix(".json"), base.with_suffix(".html")
    json_path.write_text(json.dumps(report, sort_keys=True, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    html_path.write_text(render_html(report), encoding="utf-8")
    return json_path, html_path


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
    """Whether a report file (JSON or HTML: verification, drill or compliance) is as opsctl wrote it."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return ReportCheck(path, False, f"cannot read {path}: {exc.__class__.__name__}")
    page = path.suffix.lower() in (".html", ".htm")
    report = embedded_report(text) if page else loads(text)
    kind = _KINDS.get(report["format"]) if isinstance(report, dict) and isinstance(report.get("format"), str) \
        and isinstance(report.get("sha256"), str) else None
    if kind is None:
        return ReportCheck(path, False, f"{path} is not an opsctl report (or it was damaged)")
    content = {k: v for k, v in report.items() if k != "sha256"}
    digest = _digest(content)
    if digest is None:
        return ReportCheck(path, False, f"{path} is not an opsctl report (or it was damaged)")
    if digest != report["sha256"]:
        return ReportCheck(path, False, f"ALTERED: the content of {path} does not match its SHA-256")
    module, noun = kind
    if page and _rendered(module, report) != text:
        return ReportCheck(path, False, f"ALTERED: the page {path} differs from what its embedded report renders")
    # Verification keeps its original wording: scripts may already match on it.
    verdict = "verdict" if noun == "verification" else f"{noun} verdict"
    return ReportCheck(path, True, f"intact: {path} is as opsctl wrote it ({verdict} {report.get('verdict')}, "
                                   f"SHA-256 {report['sha256']})", report["sha256"], report.get("verdict"))


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
    match = _EMBEDDED.search(text)
    return loads(match.group(1)) if match else None


def loads(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # not JSON, or nested deeper than Python's stack (a crafted file)
        return None


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:40]
