"""Fingerprints depend on values only: an awkward SQLite CRM restores with verification on.

The corpus (tests/support/corpus/sqlite.sql) leans on type affinity (one column holding integers,
reals, text and blobs), TEXT that is not UTF-8, STRICT and WITHOUT ROWID tables, generated
columns, a full-text index and odd names. It must back up, restore and verify, and any single
changed value, even one SQLite calls equal (1 and 1.0, '1' and x'31'), must be caught.
"""

from __future__ import annotations

import shutil
import sqlite3
from contextlib import closing

import pytest

from opsctl.sources import sqlite as sqlite_source
from tests.support.corpus import sqlite as corpus
from tests.support.verification import assert_detected, latest_report, verify

SALT = "0123456789abcdef"
SAME_BY_EQUALITY = [
    ("UPDATE anything SET v = 1.0 WHERE id = 1", "table anything: same row count"),
    ("UPDATE anything SET v = x'31' WHERE id = 3", "table anything: same row count"),
    ("UPDATE tags SET weight = 0.5000000000000001 WHERE id = 'a'", "table tags: same row count"),
    ("UPDATE notes SET body = 'the customers were calling' WHERE author = 'ann'", "table notes: same row count"),
]


@pytest.fixture
def crm(workspace):
    corpus.load(workspace.root / "crm.sqlite3")
    workspace.write_policy({"engine": "sqlite", "path": "crm.sqlite3"})
    assert workspace.opsctl("init").returncode == 0
    backup = workspace.opsctl("backup")
    assert backup.returncode == 0, backup.output
    return workspace


def test_the_corpus_restores_verified_and_equal_looking_changes_are_named(crm):
    restored = crm.opsctl("restore", "--yes", "--to", str(crm.root / "restored.sqlite3"))
    assert restored.returncode == 0, restored.output
    assert "equal the backup, value by value" in restored.output
    checked = verify(crm)
    assert checked.returncode == 0, checked.output
    tables = latest_report(crm)["targets"][0]["tables"]
    assert {"anything", "tags", "orders", "notes", "notes_content", "Order Items; DROP TABLE x"} <= \
        {t["name"] for t in tables}
    assert all(t["fingerprint"] == "match" for t in tables), tables
    for tamper, names in SAME_BY_EQUALITY:
        assert_detected(crm, tamper, names)


def test_every_column_catches_one_changed_value(tmp_path):
    corpus.load(tmp_path / "crm.sqlite3")
    shutil.copy(tmp_path / "crm.sqlite3", tmp_path / "copy.sqlite3")
    with closing(sqlite3.connect(tmp_path / "copy.sqlite3", isolation_level=None)) as conn:
        conn.text_factory = lambda raw: raw.decode("utf-8", "surrogateescape")
        assert len(corpus.columns(conn)) > 20

        def fingerprint(table: str) -> str | None:
            return sqlite_source._fingerprint(conn, table, SALT).fingerprint

        assert corpus.unseen_changes(conn, fingerprint) == []
