"""MySQL pieces that need no server: option-file escaping, redaction of client errors, DDL quoting."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from opsctl.policy.model import MySQLConfig
from opsctl.sources.errors import DatabaseAuthFailed
from opsctl.sources.mysql_client import MySQLServer, Trigger, create_database_sql, quote
from opsctl.sources.redact import redact_tool_output
from tests.conftest import require


@pytest.mark.parametrize("password", ['plain', 'a"b\'c\\d #e;f  ', "ends with backslash \\", "  spaces  "])
def test_defaults_file_carries_the_password_intact(password):
    require(shutil.which("mariadb") is not None, "the mariadb client")
    server = MySQLServer(host="127.0.0.1", port=3306, user="u", password=password)
    with server.defaults_file() as fd:
        shown = subprocess.run(["mariadb", f"--defaults-file=/dev/fd/{fd}", "--print-defaults"], pass_fds=(fd,),
                               capture_output=True, text=True, check=True).stdout
    assert f"--password={password}" in shown


def test_a_password_with_a_line_break_is_refused_clearly():
    server = MySQLServer(host="127.0.0.1", port=3306, user="u", password="two\nlines")
    with pytest.raises(DatabaseAuthFailed, match="line break"), server.defaults_file():
        pass


def test_client_errors_lose_the_echoed_statement_and_quoted_values():
    stderr = ("--------------\nINSERT INTO `customers` VALUES (1,'Nguyễn Văn A','secret@example.com')\n"
              "--------------\n\nERROR 1062 (23000) at line 42: Duplicate entry 'secret@example.com' for key 'email'\n")
    cleaned = redact_tool_output(stderr)
    assert "secret@example.com" not in cleaned and "Nguyễn" not in cleaned
    assert "ERROR 1062 (23000) at line 42: Duplicate entry" in cleaned


def test_names_with_backquotes_are_quoted_and_odd_charsets_are_ignored():
    assert quote("odd`name") == "`odd``name`"
    assert create_database_sql("a`b", {"mysql-charset": "utf8mb4", "mysql-collation": "x; DROP"}) == \
        "CREATE DATABASE `a``b` CHARACTER SET utf8mb4"
    trigger = Trigger(name="after insert", table="Customer List", timing="AFTER", event="INSERT",
                      statement="INSERT INTO log VALUES (NEW.id)", definer="crm@10.0.0.%", sql_mode="")
    assert trigger.create_sql() == ("CREATE DEFINER=`crm`@`10.0.0.%` TRIGGER `after insert` AFTER INSERT ON "
                                    "`Customer List` FOR EACH ROW INSERT INTO log VALUES (NEW.id)")


def test_policy_defaults_for_mysql():
    config = MySQLConfig(engine="mysql", user="crm_backup", names=["crm", "reporting"])
    assert (config.port, config.lock_non_transactional, config.lock_wait_timeout.total_seconds()) == (3306, False, 300)
    assert MySQLServer(host="/run/mysqld/mysqld.sock", port=3306, user="u").display == \
        "mysql://u@/run/mysqld/mysqld.sock"


@pytest.mark.parametrize("said", ["ERROR 1153 (08S01) at line 24: Got a packet bigger than 'max_allowed_packet' bytes",
                                  "ERROR 2006 (HY000) at line 24: Server has gone away",
                                  "ERROR 2013 (HY000) at line 24: Lost connection to server during query"])
def test_a_restore_cut_off_by_the_packet_limit_says_how_to_raise_it(said):
    from opsctl.sources.errors import RestoreFailed
    from opsctl.sources.restore_tool import run_restore_tool

    tool = ["sh", "-c", f"cat >/dev/null; echo \"{said}\" >&2; exit 1"]  # the client's own words, as it says them
    with pytest.raises(RestoreFailed) as failed:
        run_restore_tool(tool, {"PATH": "/usr/bin:/bin"}, [b"INSERT ...;\n"], "the restore failed")
    assert "SET GLOBAL max_allowed_packet = 1073741824;" in (failed.value.hint or "")
