"""database.tls: the default mode by host, the validation messages, and what reaches the clients."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import opsctl.policy.model
from opsctl.cli import main
from opsctl.policy.model import SYSTEM_CA_FILE, Policy
from opsctl.sources import Tls
from opsctl.sources.mysql_client import MySQLServer
from opsctl.sources.pg_client import PgServer

ENGINES = ("postgresql", "mysql")


def policy_data(engine: str, **database: object) -> dict:
    return {"name": "crm-prod", "database": {"engine": engine, "user": "backup", "name": "crm", **database},
            "targets": [{"name": "local", "kind": "local", "path": "repo"}],
            "repository_password": {"env": "REPO_PASS"}}


def parsed(tmp_path: Path, engine: str, **database: object) -> Policy:
    return Policy.model_validate(policy_data(engine, **database), context={"base_dir": tmp_path})


def validate(tmp_path: Path, engine: str, **database: object) -> tuple[int, str]:
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(policy_data(engine, **database)))
    result = CliRunner().invoke(main, ["--policy", str(path), "policy", "validate"])
    return result.exit_code, result.output


def ca_file(tmp_path: Path, mode: int = 0o644) -> Path:
    """A real CA certificate (the first of the system's), as a policy's ca_file."""
    bundle = SYSTEM_CA_FILE.read_text()
    end = "-----END CERTIFICATE-----\n"
    path = tmp_path / "ca.pem"
    path.write_text(bundle[:bundle.index(end) + len(end)])
    path.chmod(mode)
    return path


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("host", ["db.internal.example", "10.0.0.5", "2001:db8::1", "192.168.1.20"])
def test_a_host_off_this_machine_gets_verify_full_with_the_system_store(tmp_path, engine, host):
    database = parsed(tmp_path, engine, host=host).database
    assert database.tls_mode == "verify-full"
    assert database.tls_ca_file == SYSTEM_CA_FILE


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("host", ["localhost", "LOCALHOST", "127.0.0.1", "127.8.9.10", "::1", "[::1]",
                                  "/var/run/postgresql"])
def test_loopback_and_sockets_keep_the_clients_default(tmp_path, engine, host):
    database = parsed(tmp_path, engine, host=host).database
    assert database.tls_mode is None
    assert database.tls_ca_file is None


@pytest.mark.parametrize("engine", ENGINES)
def test_a_ca_file_alone_means_verify_full_even_on_loopback(tmp_path, engine):
    ca_file(tmp_path)
    database = parsed(tmp_path, engine, host="127.0.0.1", tls={"ca_file": "ca.pem"}).database
    assert database.tls_mode == "verify-full"
    assert database.tls_ca_file == tmp_path / "ca.pem"  # relative to the policy's folder


@pytest.mark.parametrize("mode", ["disable", "require", "verify-ca"])
def test_the_policys_mode_wins_over_the_default(tmp_path, mode):
    ca_file(tmp_path)
    tls = {"mode": mode, "ca_file": "ca.pem"} if mode == "verify-ca" else {"mode": mode}
    database = parsed(tmp_path, "postgresql", host="db.internal.example", tls=tls).database
    assert database.tls_mode == mode
    assert database.tls_ca_file == (tmp_path / "ca.pem" if mode == "verify-ca" else None)


@pytest.mark.parametrize("engine", ENGINES)
def test_verify_ca_against_the_public_cas_is_refused(tmp_path, engine):
    """verify-ca checks no host name: with the system's CAs, anyone's public certificate would pass."""
    code, output = validate(tmp_path, engine, host="db.internal.example", tls={"mode": "verify-ca"})
    assert code == 2 and "set tls.ca_file to your own CA, or use tls.mode: verify-full" in output, output


@pytest.mark.parametrize("mode", ["require", "verify-ca"])
def test_modes_mariadbs_tools_would_not_keep_are_refused(tmp_path, mode):
    """MariaDB 10.11's tools fall back to plain text unless they verify the certificate (seen with a fake server)."""
    ca_file(tmp_path)
    tls = {"mode": mode, "ca_file": "ca.pem"} if mode == "verify-ca" else {"mode": mode}
    code, output = validate(tmp_path, "mysql", host="db.internal.example", tls=tls)
    assert code == 2 and f"tls.mode {mode} cannot be kept by MariaDB's tools" in output, output


def test_a_ca_file_that_holds_no_certificate_is_refused(tmp_path):
    (tmp_path / "ca.pem").write_text("not a certificate\n")
    code, output = validate(tmp_path, "postgresql", host="db.internal.example", tls={"ca_file": "ca.pem"})
    assert code == 2 and "holds no PEM certificate" in output, output


@pytest.mark.parametrize("host", ["localhost.", "LOCALHOST.", "/run/postgresql,db.internal.example"])
def test_names_that_may_leave_the_machine_are_not_loopback(tmp_path, host):
    assert parsed(tmp_path, "postgresql", host=host).database.tls_mode == "verify-full"


@pytest.mark.parametrize("engine", ENGINES)
def test_a_missing_ca_file_is_refused(tmp_path, engine):
    code, output = validate(tmp_path, engine, host="db.internal.example", tls={"ca_file": "nope.pem"})
    assert code == 2, output
    assert "database.tls.ca_file" in output and "does not exist" in output, output


def test_a_ca_file_others_can_change_is_refused_with_the_fix(tmp_path):
    path = ca_file(tmp_path, 0o666)
    code, output = validate(tmp_path, "postgresql", host="db.internal.example", tls={"ca_file": "ca.pem"})
    assert code == 2, output
    assert "database.tls.ca_file" in output and f"chmod go-w {path}" in output, output


def test_a_ca_file_without_a_verify_mode_is_refused(tmp_path):
    ca_file(tmp_path)
    code, output = validate(tmp_path, "postgresql", host="db.internal.example",
                            tls={"mode": "require", "ca_file": "ca.pem"})
    assert code == 2, output
    assert "tls.ca_file is used only by tls.mode verify-ca or verify-full" in output, output


@pytest.mark.parametrize("engine", ENGINES)
def test_tls_on_a_unix_socket_is_refused(tmp_path, engine):
    code, output = validate(tmp_path, engine, host="/run/db", tls={"mode": "verify-full"})
    assert code == 2, output
    assert "cannot apply to the Unix socket /run/db" in output, output


def test_an_unknown_mode_names_the_known_ones(tmp_path):
    code, output = validate(tmp_path, "postgresql", host="db.internal.example", tls={"mode": "verify"})
    assert code == 2, output
    assert "database.tls.mode" in output and "verify-full" in output, output


def test_verify_without_ca_file_or_system_store_asks_for_ca_file(tmp_path, monkeypatch):
    monkeypatch.setattr(opsctl.policy.model, "SYSTEM_CA_FILE", tmp_path / "no-bundle.crt")
    code, output = validate(tmp_path, "postgresql", host="db.internal.example")
    assert code == 2, output
    assert "tls.mode verify-full needs tls.ca_file" in output, output


def test_postgres_tools_get_the_policys_tls_whatever_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("PGSSLMODE", "disable")
    monkeypatch.setenv("PGSSLROOTCERT", "/somewhere/else.pem")
    server = PgServer("db.internal.example", 5432, "backup", tls=Tls("verify-full", tmp_path / "ca.pem"))
    with server.tool_environment("crm") as env:
        assert env["PGSSLMODE"] == "verify-full"
        assert env["PGSSLROOTCERT"] == str(tmp_path / "ca.pem")


def test_postgres_on_loopback_without_tls_keeps_libpqs_default(monkeypatch):
    monkeypatch.delenv("PGSSLMODE", raising=False)
    with PgServer("127.0.0.1", 5432, "backup").tool_environment("crm") as env:
        assert "PGSSLMODE" not in env


@pytest.mark.parametrize(("mode", "expected"), [
    (None, []),
    ("disable", ["--skip-ssl"]),
    ("require", ["--ssl"]),
    ("verify-ca", ["--ssl", "--ssl-ca=/ca.pem"]),
    ("verify-full", ["--ssl", "--ssl-ca=/ca.pem", "--ssl-verify-server-cert"]),
])
def test_mariadb_tools_get_the_policys_tls_on_their_command_line(mode, expected):
    tls = Tls(mode, Path("/ca.pem") if mode in ("verify-ca", "verify-full") else None)
    argv = MySQLServer("db.internal.example", 3306, "backup", tls=tls).tool_argv("mariadb-dump", 5)
    assert argv[1] == "--defaults-extra-file=/dev/fd/5"  # still first, as the tools require
    assert argv[argv.index("--port=3306") + 1:] == expected


@pytest.mark.parametrize(("said", "expected"), [
    ("SSL error: certificate verify failed", "is not signed by the CA in tls.ca_file (/ca.pem)"),
    ('server certificate for "localhost" does not match host name "127.0.0.1"',
     "the certificate is for another host name than database.host"),
    ("server does not support SSL, but SSL was required",
     "the server does not offer TLS; tls.mode verify-full requires it"),
    ("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: IP address mismatch",
     "the certificate is for another host name than database.host"),
    ("SSL is required but the server doesn't support it", "the server does not offer TLS"),
])
def test_tls_failures_get_a_message_naming_the_policy_field(said, expected):
    refused = Tls("verify-full", Path("/ca.pem")).refusal(said.lower(), "PostgreSQL", "postgresql://u@h:1/d", "h",
                                                     "...")
    assert refused is not None
    assert expected in refused.message
    assert "database." in (refused.hint or "")


def test_other_failures_are_not_called_tls_ones():
    assert Tls("verify-full", Path("/ca.pem")).refusal("connection refused", "MySQL", "x", "h", "...") is None
    assert Tls(None).refusal("ssl error: certificate verify failed", "MySQL", "x", "h", "...") is None
