"""Verification reports: one JSON and one self-contained HTML file per run, each carrying the SHA-256 of its content.

The content is canonical JSON (sorted keys, no spaces, UTF-8). The JSON file is the content plus
`sha256`; the HTML file embeds the same JSON and is exactly what the template renders from it, so
`opsctl report verify` finds any change to either file. The hash shows a report was not altered
after it was written; the audit trail records the same hash, which a forger would also have to change.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import re
import socket
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import jinja2

from opsctl import __version__

PASSED, FAILED = "PASSED", "FAILED"
FORMAT = "opsctl-verification/1"
_EMBEDDED = re.compile(r'<script type="application/json" id="opsctl-report">(.*?)</script>', re.DOTALL)


@dataclass(frozen=True)
class ReportCheck:
    """What `opsctl report verify` found about one file."""

    path: Path
    intact: bool
    message: str


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def build(about: dict, results: list, all_targets: bool) -> dict:
    """The report (content plus its sha256) from the per-target results; `about` names policy, database, tools."""
    targets = [_target(r) for r in results]
    identical = _identical(results) if all_targets and len(results) > 1 else None
    passed = all(r.ok for r in results) and identical is not False
    content = {
        "format": FORMAT, "verdict": PASSED if passed else FAILED, "summary": _summary(results, passed, identical),
        **about, "finished_at": now(), "host": socket.gethostname(), "user": _user(),
        "opsctl_version": __version__, "all_targets": all_targets, "targets_identical": identical, "targets": targets,
    }
    return {**content, "sha256": content_sha256(content)}


def content_sha256(content: dict) -> str:
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(canonical).hexdigest()


def write(report: dict, folder: Path) -> tuple[Path, Path]:
    """The JSON and HTML files, named by time, database and a random part; returns (json, html)."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    stamp = report["finished_at"].replace(":", "").replace("-", "").replace("+0000", "Z")
    base = folder / f"verify-{stamp}-{_safe(report['database'])}-{report['sha256'][:8]}"
    json_path, html_path = base.with_suffix(".json"), base.with_suffix(".html")
    json_path.write_text(json.dumps(report, sort_keys=True, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    html_path.write_text(render_html(report), encoding="utf-8")
    return json_path, html_path


def render_html(report: dict) -> str:
    """The HTML page for a report; the same report always gives the same bytes."""
    embedded = json.dumps(report, sort_keys=True, ensure_ascii=False).replace("</", "<\\/")
    return _template().render(r=report, embedded=embedded)


def check_file(path: Path) -> ReportCheck:
    """Whether a report file (JSON or HTML) is as opsctl wrote it."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return ReportCheck(path, False, f"cannot read {path}: {exc.__class__.__name__}")
    report = _embedded_report(text) if path.suffix.lower() in (".html", ".htm") else _loads(text)
    if not isinstance(report, dict) or report.get("format") != FORMAT or "sha256" not in report:
        return ReportCheck(path, False, f"{path} is not an opsctl verification report (or it was damaged)")
    content = {k: v for k, v in report.items() if k != "sha256"}
    if content_sha256(content) != report["sha256"]:
        return ReportCheck(path, False, f"ALTERED: the content of {path} does not match its SHA-256")
    if path.suffix.lower() in (".html", ".htm") and render_html(report) != text:
        return ReportCheck(path, False, f"ALTERED: the page {path} differs from what its embedded report renders")
    return ReportCheck(path, True, f"intact: {path} is as opsctl wrote it (verdict {report['verdict']}, "
                                   f"SHA-256 {report['sha256']})")


def list_reports(folder: Path) -> list[dict]:
    """Past verifications, oldest first: date, targets, snapshots, verdict, file."""
    rows = []
    for path in sorted(folder.glob("verify-*.json")) if folder.is_dir() else ():
        report = _loads(path.read_text(encoding="utf-8", errors="replace"))
        if isinstance(report, dict) and report.get("format") == FORMAT:
            rows.append({"date": report.get("finished_at", "?"), "database": report.get("database", "?"),
                         "targets": [t.get("target") for t in report.get("targets", [])],
                         "snapshots": sorted({t.get("snapshot_id") or "-" for t in report.get("targets", [])}),
                         "verdict": report.get("verdict", "?"), "file": str(path)})
    return sorted(rows, key=lambda row: row["date"])


def _target(result) -> dict:
    tables = result.comparison.tables if result.comparison else ()
    return {
        "target": result.target, "location": result.location, "snapshot_id": result.snapshot_id,
        "snapshot_time": result.snapshot_time, "manifest_sha256": result.manifest_sha256,
        "dump_bytes": result.dump_bytes, "server_version": result.server_version, "repository": result.repository,
        "verdict": PASSED if result.ok else FAILED, "error": result.error, "hint": result.hint,
        "problems": list(result.comparison.problems) if result.comparison else [],
        "started_at": result.started_at, "duration_s": result.duration_s,
        "tables": [{"name": t.name, "rows_expected": t.rows_expected, "rows_actual": t.rows_actual,
                    "fingerprint": {True: "match", False: "MISMATCH", None: "not compared"}[t.fingerprint_match],
                    "seconds": t.seconds, "ok": t.ok} for t in tables],
    }


def _identical(results: list) -> bool:
    hashes = {r.manifest_sha256 for r in results}
    return len(hashes) == 1 and None not in hashes


def _summary(results: list, passed: bool, identical: bool | None) -> str:
    if passed:
        tables = sum(len(r.comparison.tables) for r in results)
        where = f"{len(results)} targets, byte-identical backups" if identical else "1 target"
        return f"The restored database equals the backup: {tables} table checks, schema and values match ({where})."
    first = next((r.error or r.comparison.problems[0] for r in results if not r.ok), None)
    if first is None:
        return "The targets hold different backups: their manifests' SHA-256 differ."
    return f"The backup could not be proven: {first}"


def _embedded_report(text: str):
    match = _EMBEDDED.search(text)
    return _loads(match.group(1)) if match else None


def _loads(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return None


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:40]


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _template() -> jinja2.Template:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return env.get_template("verification.html.j2")
