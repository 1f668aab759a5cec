"""No row value in any message: real errors of PostgreSQL, MariaDB and SQLite, through opsctl's conversions.

Each error is provoked on a real server with a value that must not show (a card number, an e-mail);
what opsctl makes of it must keep the SQLSTATE or errno and the object's name, and lose the value.
"""

from __future__ import annotations

import sqlite3
import subprocess
import uuid
from contextlib import closing
from pathlib import Path

import psycopg
import pymysql
import pytest
from psycopg import sql

from opsctl.sources.errors import RestoreFailed, database_error_text
from opsctl.sources.mysql_client import MySQLServer
from opsctl.sources.pg_client import PgServer
from opsctl.sources.restore_tool import run_restore_tool
from tests.conftest import PG_ROLE, PG_ROLE_PASSWORD

CARD = "4111111111111111"
EMAIL = "ada@example.test"

# --- PostgreSQL: psycopg's exceptions ---------------------------------------------------------------

PG_SCHEMA = f"""
CREATE TYPE mood AS ENUM ('calm', 'angry');
CREATE TABLE customers (id int PRIMARY KEY, email text UNIQUE, age int CHECK (age > 0), m mood, seen date,
                        tags int[]);
CREATE TABLE orders (customer int REFERENCES customers (id), note text NOT NULL);
INSERT INTO customers (id, email) VALUES (1, '{EMAIL}');
"""
# (statement, what must not show, SQLSTATE, names that must show)
PG_ERRORS = {
    "out of range": (f"INSERT INTO customers (id) VALUES ('{CARD}')", CARD, "22003", ["integer"]),
    "malformed array": (f"INSERT INTO customers (id, tags) VALUES (2, '{{{CARD}')", CARD, "22P02", []),
    "array holding quotes": (f"SELECT '{{\"a\",\"{EMAIL}\"'::text[]", "example.test", "22P02", []),
    "unique": (f"INSERT INTO customers (id, email) VALUES (2, '{EMAIL}')", EMAIL, "23505", ["customers_email_key"]),
    "check": (f"INSERT INTO customers (id, email, age) VALUES (2, 'bob{CARD}@example.test', -1)", CARD, "23514",
              ["customers", "customers_age_check"]),
    "foreign key": (f"INSERT INTO orders VALUES ({CARD[:9]}, 'x')", CARD[:9], "23503",
                    ["orders", "orders_customer_fkey"]),
    "enum": (f"INSERT INTO customers (id, m) VALUES (2, '{EMAIL}')", EMAIL, "22P02", ["mood"]),
    "date/time": ("INSERT INTO customers (id, seen) VALUES (2, '4111-41-11')", "4111-41-11", "22008", []),
    "json": (f"SELECT '{{\"card\": {CARD}x}}'::json", CARD, "22P02", ["json"]),
    "invalid bytes": (f"SELECT convert_from('\\xf0{CARD.encode().hex()}'::bytea, 'UTF8')", "0x34 0x31", "22021",
                      ["UTF8"]),
    "untranslatable": ("SELECT convert('\\xe282ac3431'::bytea, 'UTF8', 'LATIN1')", "0xe2 0x82 0xac", "22P05",
                       ["UTF8", "LATIN1"]),
    "value with a quote and a line break": (f"SELECT E'ada\"@example.test\\n{CARD}'::int", CARD, "22P02", ["integer"]),
    "raised by a function": (f"DO $$BEGIN RAISE EXCEPTION 'card % refused', '{CARD}'; END$$", CARD, "P0001", []),
}


@pytest.fixture
def pg_customers(pg_server, pg_database) -> psycopg.Connection:
    conn = pg_server.connect(pg_database)
    conn.execute(PG_SCHEMA)
    yield conn
    conn.close()


@pytest.mark.parametrize("kind", PG_ERRORS)
def test_postgresql_errors_keep_sqlstate_and_names_and_lose_values(pg_customers, kind):
    statement, secret, sqlstate, names = PG_ERRORS[kind]
    with pytest.raises(psycopg.Error) as raised:
        pg_customers.execute(statement)
    said = database_error_text(raised.value)
    assert secret not in said, said
    assert f"SQLSTATE {sqlstate}" in said and all(f'"{name}"' in said or name in said for name in names), said


# --- PostgreSQL: pg_restore's stderr ------------------------------------------------------------------

# A CHECK that looks at another table: pg_restore loads that table after this one, so the CHECK fails.
CARD_CHECK = """
CREATE TABLE registry (number text PRIMARY KEY);
CREATE FUNCTION card_known(n text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM public.registry r WHERE r.number = n) THEN
    RAISE EXCEPTION 'card % is not in the registry', n;
  END IF;
  RETURN true;
END $$;
"""
# The destination's table: the same rows cannot load into it, and the server says why.
PG_LOAD_FAILURES = {
    "out of range": ("number int", "cards"),
    "malformed array": ("number int[]", "cards"),
    # A CHECK that looks at another table (loaded after this one): PL/pgSQL's RAISE quotes the row.
    "raised by a check": ("number text CHECK (public.card_known(number))", "cards"),
}


def _pg_restore_failure(pg_server, source: str, target: str, column: str) -> str:
    """Dump `source`'s cards (data only), restore them into `target`'s own cards table, and return what opsctl says."""
    superuser = PgServer(host="127.0.0.1", port=pg_server.port, user=pg_server.superuser, password=pg_server.password)
    with pg_server.connect(target) as conn:
        conn.execute(CARD_CHECK)
        conn.execute(f"CREATE TABLE cards (id int, {column})")
    with superuser.tool_environment(source) as env:
        dump = subprocess.run(["pg_dump", "--format=custom", "--data-only", "--table=cards"], env=env,
                              capture_output=True, check=True).stdout
    with superuser.tool_environment(target) as env, pytest.raises(RestoreFailed) as failed:
        run_restore_tool(["pg_restore", "--exit-on-error", "--single-transaction", "--data-only",
                          f"--dbname={target}"], env, [dump], f"pg_restore into {target} failed")
    return failed.value.message


def _pg_database(pg_server, encoding: str = "UTF8") -> str:
    name = "redact_" + uuid.uuid4().hex[:8]
    with pg_server.connect() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING {} LOCALE 'C'").format(
            sql.Identifier(name), sql.Literal(encoding)))
    return name


@pytest.mark.parametrize("kind", PG_LOAD_FAILURES)
def test_pg_restore_errors_lose_row_values(pg_server, kind):
    column, table = PG_LOAD_FAILURES[kind]
    source = _pg_database(pg_server)
    with pg_server.connect(source) as conn:
        conn.execute("CREATE TABLE cards (id int, number text)")
        conn.execute("INSERT INTO cards VALUES (1, %s)", (CARD,))
    said = _pg_restore_failure(pg_server, source, _pg_database(pg_server), column)
    assert CARD not in said, said
    assert f'COPY failed for table "{table}"' in said, said


def test_pg_restore_encoding_errors_lose_the_raw_bytes(pg_server):
    """A character the destination's encoding lacks: the server prints its bytes, in hex."""
    source = _pg_database(pg_server)
    with pg_server.connect(source) as conn:
        conn.execute("CREATE TABLE cards (id int, number text)")
        conn.execute("INSERT INTO cards VALUES (1, %s)", (f"€{CARD}",))
    said = _pg_restore_failure(pg_server, source, _pg_database(pg_server, "LATIN1"), "number text")
    assert "0xe2 0x82 0xac" not in said and CARD not in said, said  # the value's first character, as bytes
    assert 'COPY failed for table "cards"' in said and 'in encoding "UTF8" has no equivalent in encoding "LATIN1"' \
        in said, said


# --- MariaDB: pymysql's exceptions and the mariadb client's stderr --------------------------------------

MY_SCHEMA = (
    "SET SESSION sql_mode = 'STRICT_ALL_TABLES'",
    ("CREATE TABLE customers (id int PRIMARY KEY, email varchar(40) UNIQUE, card varchar(8), age tinyint "
     "CHECK (age > 0), seen date)"),
    "CREATE TABLE orders (customer int, CONSTRAINT fk_customer FOREIGN KEY (customer) REFERENCES customers (id))",
    f"INSERT INTO customers (id, email) VALUES (1, '{EMAIL}'), (2, 'O''Brien {CARD}'), (3, 'a\\nb {CARD}')",
)
MY_ERRORS = {
    "duplicate": (f"INSERT INTO customers (id, email) VALUES (4, '{EMAIL}')", EMAIL, 1062, ["email"]),
    "duplicate holding a quote": (f"INSERT INTO customers (id, email) VALUES (4, 'O''Brien {CARD}')", CARD, 1062,
                                  ["email"]),
    "duplicate holding a line break": (f"INSERT INTO customers (id, email) VALUES (4, 'a\\nb {CARD}')", CARD, 1062,
                                       ["email"]),
    "incorrect integer": (f"INSERT INTO customers (id, age) VALUES (4, '{EMAIL}')", EMAIL, 1366, ["age"]),
    "too long": (f"INSERT INTO customers (id, card) VALUES (4, '{CARD}')", CARD, 1406, ["card"]),
    # MariaDB shows the first few characters: \xF041111...
    "incorrect string": (f"INSERT INTO customers (id, email) VALUES (4, _binary 0xf0{CARD.encode().hex()})",
                         CARD[:5], 1366, ["email"]),
    "out of range": (f"INSERT INTO customers (id, age) VALUES (4, {CARD})", CARD, 1264, ["age"]),
    "truncated double": (f"UPDATE customers SET age = 1 WHERE email = 0 + '{EMAIL}'", EMAIL, 1292, []),
    "incorrect date": (f"INSERT INTO customers (id, seen) VALUES (4, '4111-41-11 {EMAIL}')", EMAIL, 1292, ["seen"]),
    "foreign key": ("INSERT INTO orders VALUES (4111)", "4111", 1452, ["fk_customer", "orders"]),
    "syntax near a value": (f"SELECT * FROM customers WHERE LIMIT email = '{EMAIL}'", EMAIL, 1064, []),
    "signalled": (f"SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'card {CARD} refused'", CARD, 1644, []),
}


@pytest.fixture
def my_customers(mariadb_server, my_database) -> pymysql.connections.Connection:
    conn = mariadb_server.connect(my_database)
    with conn.cursor() as cur:
        for statement in MY_SCHEMA:
            cur.execute(statement)
    yield conn
    conn.close()


@pytest.mark.parametrize("kind", MY_ERRORS)
def test_mariadb_errors_keep_errno_and_names_and_lose_values(my_customers, kind):
    statement, secret, errno, names = MY_ERRORS[kind]
    with pytest.raises(pymysql.err.MySQLError) as raised, my_customers.cursor() as cur:
        cur.execute(statement)
    said = database_error_text(raised.value)
    assert secret not in said, said
    assert f"MySQL error {errno}" in said and all(name in said for name in names), said


MY_LOAD_FAILURES = {  # what the mariadb client says, as opsctl shows it: kept, and never shown
    "duplicate": (f"INSERT INTO customers (id, email) VALUES (4, '{EMAIL}');", EMAIL, "ERROR 1062", "'email'"),
    "duplicate holding a quote": (f"INSERT INTO customers (id, email) VALUES (4, 'O''Brien {CARD}');", CARD,
                                  "ERROR 1062", "'email'"),
    "duplicate holding a line break": (f"INSERT INTO customers (id, email) VALUES (4, 'a\\nb {CARD}');", CARD,
                                       "ERROR 1062", "'email'"),
    "incorrect string": (("SET sql_mode = 'STRICT_ALL_TABLES';\n"
                          f"INSERT INTO customers (id, email) VALUES (4, _binary 0xf027{CARD.encode().hex()});"),
                         CARD[:4], "ERROR 1366", "`customers`.`email`"),  # shown as '\xF0'4111...
    "syntax near a value": (f"SELECT * FROM customers WHERE LIMIT email = 'x''{CARD}';", CARD, "ERROR 1064",
                            "at line 1"),
    "signalled": (f"SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'card {CARD} refused';", CARD, "ERROR 1644", ""),
}


@pytest.mark.usefixtures("my_customers")
@pytest.mark.parametrize("kind", MY_LOAD_FAILURES)
def test_mariadb_client_errors_lose_row_values(mariadb_server, my_database, kind):
    script, secret, code, name = MY_LOAD_FAILURES[kind]
    server = MySQLServer(host=str(mariadb_server.socket), port=mariadb_server.port, user="root")
    with server.defaults_file() as fd:
        argv = [*server.tool_argv("mariadb", fd), "--batch", "--no-auto-rehash", f"--database={my_database}"]
        with pytest.raises(RestoreFailed) as failed:
            run_restore_tool(argv, {"PATH": "/usr/bin:/bin"}, [script.encode()], "loading the dump failed", (fd,))
    said = failed.value.message
    assert secret not in said and "Brien" not in said, said
    assert code in said and name in said, said


# --- SQLite: sqlite3's exceptions -----------------------------------------------------------------------

SQLITE_ERRORS = {
    # Python's sqlite3 quotes the text it cannot decode.
    "undecodable text": ("SELECT number FROM cards", CARD, "number"),
    "unique": (f"INSERT INTO cards VALUES (2, '{CARD}')", CARD, "SQLITE_CONSTRAINT_UNIQUE"),
    "unrecognized token": (f"SELECT '{EMAIL}", EMAIL, "SQLITE_ERROR"),
}


@pytest.mark.parametrize("kind", SQLITE_ERRORS)
def test_sqlite_errors_lose_values(tmp_path: Path, kind):
    statement, secret, kept = SQLITE_ERRORS[kind]
    with closing(sqlite3.connect(tmp_path / "crm.sqlite3")) as conn:
        conn.execute("CREATE TABLE cards (id INTEGER PRIMARY KEY, number TEXT UNIQUE)")
        conn.execute(f"INSERT INTO cards VALUES (1, CAST(X'f0{CARD.encode().hex()}' AS TEXT))")
        conn.execute(f"INSERT INTO cards VALUES (3, '{CARD}')")
        with pytest.raises(sqlite3.Error) as raised:
            conn.execute(statement).fetchall()
    said = database_error_text(raised.value)
    assert secret not in said and kept in said, said


# --- end to end: a restore that fails on a row value ----------------------------------------------------

def test_a_restore_failing_on_a_row_value_shows_it_nowhere(workspace, pg_server, pg_database):
    """A CHECK that reads another table fails when pg_restore loads that table later; its RAISE quotes the row."""
    with pg_server.connect(pg_database, PG_ROLE, PG_ROLE_PASSWORD) as conn:
        conn.execute(CARD_CHECK)
        conn.execute("INSERT INTO registry VALUES (%s)", (CARD,))
        conn.execute("CREATE TABLE cards (id int PRIMARY KEY, number text CHECK (public.card_known(number)))")
        conn.execute("INSERT INTO cards VALUES (1, %s)", (CARD,))
    workspace.secret("db.pass", PG_ROLE_PASSWORD)
    workspace.write_policy({"engine": "postgresql", "host": "127.0.0.1", "port": pg_server.port,
                            "user": PG_ROLE, "password": {"file": "db.pass"}, "name": pg_database})
    for step in (("init",), ("backup",)):
        done = workspace.opsctl(*step)
        assert done.returncode == 0, done.output
    restore = workspace.opsctl("restore", "--yes", "--to", f"{pg_database}_copy")
    assert restore.returncode == 1, restore.output
    assert 'COPY failed for table "cards"' in " ".join(restore.output.split()), restore.output
    assert CARD not in restore.output
    audit = (workspace.root / "state" / "audit.jsonl").read_text()
    assert "COPY failed for table" in audit and CARD not in audit
