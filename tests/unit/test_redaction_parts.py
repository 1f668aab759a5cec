"""Redaction of database messages, on the exact texts PostgreSQL 15, MariaDB 10.11 and their tools print."""

from __future__ import annotations

import pytest

from opsctl.sources.redact import WITHHELD, redact_message, redact_tool_output

# (what the server said, what opsctl may show)
MESSAGES = [
    ('value "4111111111111111abc" is out of range for type integer', 'value "…" is out of range for type integer'),
    ('malformed array literal: "{"a","ada@example.test""', 'malformed array literal: "…"'),
    ('date/time field value out of range: "4111-41-11"', 'date/time field value out of range: "…"'),
    ('invalid input syntax for type integer: "ada"@example.test\n4111111111111111"',
     'invalid input syntax for type integer: "…"'),
    ('Token "4111111111111111x" is invalid.', 'Token "…" is invalid.'),
    ('invalid byte sequence for encoding "UTF8": 0xe9 0x34 0x31', 'invalid byte sequence for encoding "UTF8": 0x…'),
    ('character with byte sequence 0xe2 0x82 0xac in encoding "UTF8" has no equivalent in encoding "LATIN1"',
     'character with byte sequence 0x… in encoding "UTF8" has no equivalent in encoding "LATIN1"'),
    ("Key (email)=(ada@example.test) already exists.", "Key (email)=(…) already exists."),
    ("Failing row contains (3, bob@example.test, null, -11, null).", "Failing row contains (…)."),
    ("Duplicate entry 'O'Brien 4111' for key 'email'", "Duplicate entry '…' for key 'email'"),
    ("Duplicate entry 'a\nb 4111 x' for key 'email'", "Duplicate entry '…' for key 'email'"),
    ("Duplicate entry 'x' for key 'y' for key 'email'", "Duplicate entry '…' for key 'email'"),
    ("Table 'r.nosuch' doesn't exist", "Table 'r.nosuch' doesn't exist"),
    ("Field 'note' doesn't have a default value", "Field 'note' doesn't have a default value"),
    ("Data too long for column 'card' at row 1", "Data too long for column 'card' at row 1"),
    ("Table has no partition for value 4111111111111111", "Table has no partition for value …"),
    ("Could not decode to UTF-8 column 'number' with text '\ufffd4111111111111111'",
     "Could not decode to UTF-8 column 'number' with text '…'"),
    ('unrecognized token: "\'ada@example.test"', 'unrecognized token: "…"'),
    ('relation "ada@example.test" does not exist', 'relation "…" does not exist'),  # not a name: lost
]


@pytest.mark.parametrize(("said", "shown"), MESSAGES)
def test_values_go_and_names_stay(said, shown):
    assert redact_message(said) == shown


# Forms the rules before these redacted already (a guard: they pass on the old code too).
KEPT_FORMS = [
    ('invalid input value for enum mood: "ada@example.test"', 'invalid input value for enum mood: "…"'),
    ('new row for relation "customers" violates check constraint "customers_age_check"',
     'new row for relation "customers" violates check constraint "customers_age_check"'),
    ('null value in column "note" of relation "child" violates not-null constraint',
     'null value in column "note" of relation "child" violates not-null constraint'),
    ("Incorrect string value: '\\xE94111' for column `r`.`customers`.`email` at row 1",
     "Incorrect string value: '…' for column `r`.`customers`.`email` at row 1"),
    ("Truncated incorrect DOUBLE value: 'ada@example.test'", "Truncated incorrect DOUBLE value: '…'"),
]


@pytest.mark.parametrize(("said", "shown"), KEPT_FORMS)
def test_forms_redacted_before_stay_redacted(said, shown):
    assert redact_message(said) == shown


PG_RESTORE = """\
pg_restore: error: COPY failed for table "cards": ERROR:  value "4111111111111111" is out of range for type integer
CONTEXT:  COPY cards, line 1, column number: "4111111111111111"
pg_restore: error: COPY failed for table "cards": ERROR:  card 4111111111111111 is not in the registry
CONTEXT:  PL/pgSQL function public.card_known(text) line 4 at RAISE
COPY cards, line 1: "1	4111111111111111"
"""
PG_DUMP = """\
pg_dump: error: Dumping the contents of table "cards" failed: PQgetResult() failed.
pg_dump: detail: Error message from server: ERROR:  character with byte sequence 0xe2 0x82 0xac in encoding "UTF8" \
has no equivalent in encoding "LATIN1"
pg_dump: detail: Command was: COPY public.cards (id, number, d) TO stdout;
"""


def test_pg_restore_keeps_the_table_and_loses_context_lines_and_raised_text():
    assert redact_tool_output(PG_RESTORE).splitlines() == [
        'pg_restore: error: COPY failed for table "cards": ERROR:  value "…" is out of range for type integer',
        f'pg_restore: error: COPY failed for table "cards": ERROR:  {WITHHELD}',
    ]


def test_pg_dump_keeps_the_servers_error_and_loses_the_bytes():
    assert redact_tool_output(PG_DUMP).splitlines() == [
        'pg_dump: error: Dumping the contents of table "cards" failed: PQgetResult() failed.',
        ('pg_dump: detail: Error message from server: ERROR:  character with byte sequence 0x… in encoding "UTF8" '
         'has no equivalent in encoding "LATIN1"'),
    ]


def test_mariadb_tools_lose_values_and_signalled_text():
    said = ("--------------\nINSERT INTO customers VALUES (1, 'a\nb 4111')\n--------------\n\n"
            "ERROR 1062 (23000) at line 1: Duplicate entry 'a\nb 4111' for key 'email'\n"
            "ERROR 1644 (45000) at line 3: card 4111\nrefused\n"
            "mariadb-dump: Got error: 1049: \"Unknown database 'nosuchdb'\" when selecting the database\n")
    assert redact_tool_output(said).splitlines() == [
        "ERROR 1062 (23000) at line 1: Duplicate entry '…' for key 'email'",
        f"ERROR 1644 (45000) at line 3: {WITHHELD}",
        'mariadb-dump: Got error: 1049: "…" when selecting the database',
    ]


def test_a_tail_cut_in_the_middle_of_a_value_drops_the_remains():
    """StreamTail keeps the last lines: the first may be the end of a value that spans lines."""
    said = '4111111111111111" is out of range\npg_restore: error: COPY failed for table "cards": ERROR:  x'
    assert redact_tool_output(said) == 'pg_restore: error: COPY failed for table "cards": ERROR:  x'


def test_text_a_plpython_function_raised_is_withheld():
    """plpy.error() and PL/Perl's die write any text, with no 'at RAISE' in the context to tell."""
    stderr = ('pg_restore: error: COPY failed for table "cards": ERROR:  card 4111111111111111 refused\n'
              'CONTEXT:  Traceback (most recent call last):\n  PL/Python function "check_card", line 3, in <module>\n')
    shown = redact_tool_output(stderr)
    assert "4111" not in shown and WITHHELD in shown, shown
