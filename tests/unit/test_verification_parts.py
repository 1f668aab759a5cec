"""Verification's pure parts: comparing censuses, old manifests, report hashes, SQLite's value encoding."""

from __future__ import annotations

import json

from opsctl.actions.fingerprint_check import compare
from opsctl.actions.verify import TargetVerification
from opsctl.manifest import Census, Manifest, TableStats
from opsctl.reports import verification
from opsctl.sources.sqlite import _encode

OLD_MANIFEST = {"policy": "p", "opsctl_version": "0.1.0", "started_at": "s", "finished_at": "f", "dump_bytes": 1,
                "dump_sha256": "00", "format_version": 1, "extra": {},
                "facts": {"engine": "postgresql", "database": "crm", "dump_format": "x", "server_version": "15",
                          "tables": [{"name": "public.t", "rows": 2}], "properties": {}, "warnings": []}}


def census(**changes) -> Census:
    base = dict(tables=(TableStats("t", 2, "aa"), TableStats("u", 0, "bb")), schema={"index": ["t_pk"]},
                values={"sequence s": 10, "large objects": "1:ff"}, salt="salt")
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


def test_an_old_manifest_loads_without_fingerprints():
    manifest = Manifest.from_json(json.dumps(OLD_MANIFEST).encode())
    assert manifest.facts.fingerprint_salt == "" and manifest.facts.tables[0].fingerprint is None


def test_sqlite_encoding_tells_null_empty_and_types_apart():
    encoded = {_encode(v) for v in (None, "", 0, "0", 0.0, b"", b"0")}
    assert len(encoded) == 7
    assert _encode("a") + _encode("bc") != _encode("ab") + _encode("c")


def _report() -> dict:
    result = TargetVerification(target="local", location="local /r", snapshot_id="abcd1234", snapshot_time="t",
                                manifest_sha256="m", dump_bytes=1, repository="no errors",
                                comparison=compare(census(), census()), error=None, hint=None, started_at="s",
                                duration_s=1.0)
    about = {"policy": "p", "database": "crm", "engine": "sqlite", "started_at": "s", "restic_version": "restic 0.14.0"}
    return verification.build(about, [result], all_targets=False)


def test_written_reports_are_intact_and_a_changed_one_is_not(tmp_path):
    report = _report()
    assert report["verdict"] == verification.PASSED
    for path in verification.write(report, tmp_path):
        assert verification.check_file(path).intact
        path.write_text(path.read_text().replace("abcd1234", "abcd9999"))
        assert not verification.check_file(path).intact


def test_a_changed_page_with_its_embedded_report_untouched_is_found(tmp_path):
    _, page = verification.write(_report(), tmp_path)
    page.write_text(page.read_text().replace("<h1 id=\"verdict\">Verification PASSED", "<h1 id=\"verdict\">All good"))
    check = verification.check_file(page)
    assert not check.intact and "differs from what its embedded report renders" in check.message
