"""Verification's pure parts: comparing censuses, old manifests, report hashes, SQLite's value encoding."""

from __future__ import annotations

import json

import pytest

from opsctl.actions.fingerprint_check import compare
from opsctl.actions.verify import TargetVerification, report_content
from opsctl.manifest import Census, Manifest, TableStats
from opsctl.reports import sealed, verification
from opsctl.reports.records import VerificationReport
from opsctl.sources.sqlite import _encode

OLD_MANIFEST = {"policy": "p", "opsctl_version": "0.1.0", "started_at": "s", "finished_at": "f", "dump_bytes": 1,
                "dump_sha256": "00", "format_version": 1, "extra": {},
                "facts": {"engine": "postgresql", "database": "crm", "dump_format": "x", "server_version": "15",
                          "tables": [{"name": "public.t", "rows": 2}], "properties": {}, "warnings": []}}


def census(**changes) -> Census:
    base = {"tables": (TableStats("t", 2, "aa"), TableStats("u", 0, "bb")), "schema": {"index": ["t_pk"]},
            "values": {"sequence s": 10, "large objects": "1:ff"}, "salt": "salt"}
    return Census(**{**base, **changes})


def test_equal_censuses_pass():
    assert compare(census(), census()).ok


def test_each_difference_is_named():
    found = compare(census(), census(tables=(TableStats("t", 2, "zz"), TableStats("v", 1, "cc")), schema={},
                                     values={"sequence s": 3, "large objects": "1:00"})).problems
    assert found == ("table t: same row count, different content (fingerprint mismatch)",
                     "table u: missing from the restored database", "table v: not in the backup",
                     "index t_pk: missing from the restored database", "large objects: does not match the backup",
                     "sequence s: behind the backup (reset or lost)")


def test_a_sequence_ahead_of_the_backup_passes():
    assert compare(census(), census(values={"sequence s": 12, "large objects": "1:ff"})).ok


def test_a_table_hashed_in_a_way_the_restore_cannot_repeat_passes_on_its_row_count_with_a_note():
    backup = census(tables=(TableStats("t", 2, "aa"), TableStats("u", 0, "bb"), TableStats("m", None)))
    restored = census(tables=(TableStats("t", 2, None, method="pg-legacy-unreproducible"), TableStats("u", 0, "bb"),
                              TableStats("m", None)))
    found = compare(backup, restored)
    assert found.ok and found.proven == 1
    assert found.notes[0].startswith("table t: row count checked, content not compared")
    assert found.notes[1].startswith("table m: only its presence was checked")
    extra = compare(backup, census(tables=(*restored.tables, TableStats("v", None))))
    assert extra.problems == ("table v: not in the backup",)
    gone = compare(backup, census(tables=restored.tables[:2]))
    assert gone.problems == ("table m: missing from the restored database",)
    moved = compare(backup, census(tables=(TableStats("t", 1, None, method="pg-legacy-unreproducible"),
                                           TableStats("u", 0, "bb"), TableStats("m", None))))
    assert moved.problems == ("table t: expected 2 rows, found 1",)


def test_a_newer_manifest_with_fields_this_opsctl_does_not_know_still_loads():
    newer = json.loads(json.dumps(OLD_MANIFEST))
    newer["facts"]["tables"][0].update(method="pg-values-9", shiny=True)
    newer["facts"]["shiny"] = 1
    newer["shiny"] = 2
    assert Manifest.from_json(json.dumps(newer).encode()).facts.tables[0].method == "pg-values-9"


def test_a_manifest_whose_salt_is_not_hex_is_refused():
    bad = json.loads(json.dumps(OLD_MANIFEST))
    bad["facts"]["fingerprint_salt"] = "x'); DROP TABLE t; --"
    with pytest.raises(ValueError, match="salt is not hex"):
        Manifest.from_json(json.dumps(bad).encode())


def test_an_old_manifest_loads_without_fingerprints():
    manifest = Manifest.from_json(json.dumps(OLD_MANIFEST).encode())
    assert manifest.facts.fingerprint_salt == "" and manifest.facts.tables[0].fingerprint is None


def test_sqlite_encoding_tells_null_empty_and_types_apart():
    encoded = {_encode(v) for v in (None, "", 0, "0", 0.0, b"", b"0")}
    assert len(encoded) == 7
    assert _encode("a") + _encode("bc") != _encode("ab") + _encode("c")


def _report() -> VerificationReport:
    result = TargetVerification(target="local", location="local /r", snapshot_id="abcd1234", snapshot_time="t",
                                manifest_sha256="m", dump_bytes=1, repository="no errors",
                                comparison=compare(census(), census()), error=None, hint=None, started_at="s",
                                duration_s=1.0)
    about = {"policy": "p", "database": "crm", "engine": "sqlite", "started_at": "s", "restic_version": "restic 0.14.0"}
    return verification.build(report_content(about, [result], all_targets=False))


def test_written_reports_are_intact_and_a_changed_one_is_not(tmp_path):
    report = _report()
    assert report.verdict == verification.PASSED
    assert VerificationReport.of(report.to_json()).to_json() == report.to_json()
    for path in verification.write(report, tmp_path):
        assert verification.check_file(path).intact
        path.write_text(path.read_text().replace("abcd1234", "abcd9999"))
        assert not verification.check_file(path).intact


def test_a_changed_page_with_its_embedded_report_untouched_is_found(tmp_path):
    _, page = verification.write(_report(), tmp_path)
    page.write_text(page.read_text().replace("<h1 id=\"verdict\">Verification PASSED", "<h1 id=\"verdict\">All good"))
    check = verification.check_file(page)
    assert not check.intact and "differs from what its embedded report renders" in check.message


def test_hand_made_reports_are_called_altered_never_a_crash(tmp_path):
    odd = tmp_path / "odd.json"
    odd.write_text(json.dumps({"format": [], "sha256": "x"}))
    assert not sealed.check_file(odd).intact
    content = {"format": "opsctl-verification/1", "verdict": "PASSED"}  # hashes right, but no page can show it
    page = tmp_path / "page.html"
    page.write_text('<script type="application/json" id="opsctl-report">'
                    + json.dumps({**content, "sha256": sealed.content_sha256(content)}) + "</script>")
    found = sealed.check_file(page)
    assert not found.intact and "ALTERED" in found.message
