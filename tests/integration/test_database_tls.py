"""Encryption in transit against real servers with TLS and a throwaway CA.

The TLS servers accept logins only over TLS (PostgreSQL: hostssl in pg_hba.conf; MariaDB: REQUIRE
SSL), so a backup that works proves that both opsctl's own sessions and the dump tool used TLS.
Their certificate names `localhost` only: 127.0.0.1 is "another host name". The session's plain
servers (conftest) play the server without TLS.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from opsctl.sources import Tls
from opsctl.sources.mysql_client import MySQLServer
from opsctl.sources.pg_client import PgServer
from tests.conftest import MY_PASSWORD, MY_USER, PG_ROLE, PG_ROLE_PASSWORD, require
from tests.support.certs import Authority, ServerFiles
from tests.support.mariadb_server import MariaDBServer, mariadb_binaries
from tests.support.servers import PostgresServer, postgres_bindir
from tests.support.workspace import Result, Workspace

VERIFY_FULL = {"mode": "verify-full", "ca_file": "ca.pem"}
WRONG_CA = "is not signed by the CA in tls.ca_file"
WRONG_HOST = "the certificate is for another host name than database.host"
NO_TLS = "the server does not offer TLS; tls.mode verify-full requires it"


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> tuple[ServerFiles, Path]:
    """A server certificate for `localhost` from one CA, and another CA's certificate to play the wrong one."""
    folder = tmp_path_factory.mktemp("tls")
    files = Authority("opsctl test CA").issue(folder, "server", dns=("localhost",))
    return files, Authority("some other CA").write_ca(folder / "wrong-ca.pem")


@pytest.fixture(scope="module")
def pg_tls_server(certificates):
    require(shutil.which("pg_dump") is not None and shutil.which("pg_restore") is not None, "pg_dump/pg_restore")
    bindir = postgres_bindir()
    require(bindir is not None and (bindir / "initdb").exists(), "PostgreSQL server (initdb, pg_ctl)")
    server = PostgresServer(bindir, tls=certificates[0]).start()
    yield server
    server.cleanup()


@pytest.fixture(scope="module")
def my_tls_server(certificates):
    require(all(mariadb_binaries().values()), "MariaDB server (mariadb-install-db, mariadbd)")
    require(bool(shutil.which("mariadb-dump")) and bool(shutil.which("mariadb")), "mariadb-dump and mariadb")
    server = MariaDBServer(tls=certificates[0]).start()
    yield server
    server.cleanup()


def with_ca(workspace: Workspace, certificates: tuple[ServerFiles, Path], wrong: bool = False) -> None:
    """The policy's tls.ca_file (ca.pem), the right CA or the wrong one."""
    shutil.copyfile(certificates[1] if wrong else certificates[0].ca, workspace.root / "ca.pem")
    (workspace.root / "ca.pem").chmod(0o644)


def pg_policy(workspace: Workspace, server: PostgresServer, host: str = "localhost") -> str:
    name = "crm_" + uuid.uuid4().hex[:8]
    server.create_role_and_database(PG_ROLE, PG_ROLE_PASSWORD, name)
    workspace.secret("db.pass", PG_ROLE_PASSWORD)
    workspace.write_policy({"engine": "postgresql", "host": host, "port": server.port, "user": PG_ROLE,
                            "password": {"file": "db.pass"}, "name": name, "tls": VERIFY_FULL})
    return name


def my_policy(workspace: Workspace, server: MariaDBServer, host: str = "localhost") -> str:
    name = "crm_" + uuid.uuid4().hex[:8]
    server.create_user_and_database(MY_USER, MY_PASSWORD, name)
    workspace.secret("db.pass", MY_PASSWORD)
    workspace.write_policy({"engine": "mysql", "host": host, "port": server.port, "user": MY_USER,
                            "password": {"file": "db.pass"}, "names": [name], "tls": VERIFY_FULL})
    return name


def backup(workspace: Workspace) -> Result:
    """A backup into a new repository (init does not connect to the database)."""
    assert workspace.opsctl("init").returncode == 0
    return workspace.opsctl("backup")


def round_trip(workspace: Workspace, name: str, ambient: dict[str, str]) -> None:
    """init, backup, restore into NAME_back and doctor, all in a hostile environment; doctor sees verified TLS."""
    assert workspace.opsctl("init", env=ambient).returncode == 0
    for args in (("backup",), ("restore", "--yes", "--to", name + "_back")):
        result = workspace.opsctl(*args, env=ambient)
        assert result.returncode == 0, result.output
    doctor = workspace.opsctl("doctor", env=ambient)
    assert "TLS verify-full, TLSv1.3" in doctor.output, doctor.output


def refused(result: Result, expected: str) -> None:
    """Refused as any other connection failure (exit 1), with the TLS message, its hint, and no secret."""
    assert result.returncode == 1, result.output
    assert expected in result.output, result.output
    assert "database.tls" in result.output or "database.host" in result.output, result.output
    assert "Traceback" not in result.output
    assert PG_ROLE_PASSWORD not in result.output and MY_PASSWORD not in result.output


# --- PostgreSQL -------------------------------------------------------------------------------------------


def test_pg_backup_and_restore_over_verified_tls_whatever_pgsslmode_says(workspace, pg_tls_server, certificates):
    with_ca(workspace, certificates)
    name = pg_policy(workspace, pg_tls_server)
    with pg_tls_server.connect(name, PG_ROLE, PG_ROLE_PASSWORD) as conn:
        conn.execute("CREATE TABLE t (v int)")
        conn.execute("INSERT INTO t SELECT generate_series(1, 100)")
    # The server takes no login without TLS: were PGSSLMODE=disable to reach psycopg or pg_dump, they would fail.
    ambient = {"PGSSLMODE": "disable", "PGSSLROOTCERT": str(certificates[1])}

    round_trip(workspace, name, ambient)
    with pg_tls_server.connect(name + "_back") as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (100,)


# per engine: (policy writer, TLS server fixture, server without TLS fixture)
ENGINES = {"postgresql": (pg_policy, "pg_tls_server", "pg_server"), "mariadb": (my_policy, "my_tls_server",
                                                                                "mariadb_server")}
# what the certificate check meets: (the wrong CA?, the host name to connect to, a server without TLS?, message)
REFUSALS = {"wrong-ca": (True, "localhost", False, WRONG_CA), "wrong-host": (False, "127.0.0.1", False, WRONG_HOST),
            "no-tls": (False, "localhost", True, NO_TLS)}


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("case", REFUSALS)
def test_a_server_tls_cannot_vouch_for_is_refused(workspace, certificates, request, engine, case):
    wrong_ca, host, plain, message = REFUSALS[case]
    write_policy, tls_server, plain_server = ENGINES[engine]
    with_ca(workspace, certificates, wrong=wrong_ca)
    write_policy(workspace, request.getfixturevalue(plain_server if plain else tls_server), host=host)
    refused(backup(workspace), message)


@pytest.mark.parametrize("case", [
    ("localhost", True, "certificate verify failed"),
    ("127.0.0.1", False, "does not match host name"),
], ids=["wrong-ca", "wrong-host"])
def test_pg_dump_itself_checks_the_certificate(pg_tls_server, certificates, case, monkeypatch):
    """The tools' own check, not only opsctl's session before them: pg_dump with the environment opsctl gives it."""
    host, wrong_ca, said = case
    monkeypatch.setenv("PGSSLMODE", "prefer")  # would connect without any check, were it to win
    files, wrong = certificates
    server = PgServer(host, pg_tls_server.port, "postgres", pg_tls_server.password,
                      tls=Tls("verify-full", wrong if wrong_ca else files.ca))
    good = PgServer("localhost", pg_tls_server.port, "postgres", pg_tls_server.password,
                    tls=Tls("verify-full", files.ca))
    assert run_pg_dump(good).returncode == 0
    failed = run_pg_dump(server)
    assert failed.returncode != 0 and said in failed.stderr


def run_pg_dump(server: PgServer) -> subprocess.CompletedProcess[str]:
    with server.tool_environment("postgres") as env:
        return subprocess.run(["pg_dump", "--schema-only", "--no-password"], env=env, capture_output=True, text=True,
                              check=False, timeout=60)


# --- MariaDB ------------------------------------------------------------------------------------------------


def require_tls(server: MariaDBServer) -> None:
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute("ALTER USER %s@'127.0.0.1' REQUIRE SSL", (MY_USER,))


def test_mariadb_backup_and_restore_over_verified_tls_whatever_my_cnf_says(workspace, my_tls_server,
                                                                           certificates):
    with_ca(workspace, certificates)
    name = my_policy(workspace, my_tls_server)
    require_tls(my_tls_server)
    with my_tls_server.connect(name) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE t (v INT PRIMARY KEY) ENGINE=InnoDB")
        cur.executemany("INSERT INTO t VALUES (%s)", [(i,) for i in range(100)])
    # The operator's ~/.my.cnf is read after opsctl's defaults file: the policy's TLS must still win over it.
    home = workspace.root / "home"
    home.mkdir()
    (home / ".my.cnf").write_text("[client]\nskip-ssl\nssl-verify-server-cert=0\n")
    ambient = {"HOME": str(home)}

    round_trip(workspace, name, ambient)
    with my_tls_server.connect(name + "_back") as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM t")
        assert cur.fetchone() == (100,)


@pytest.mark.parametrize("case", [
    ("localhost", True, False, "self-signed certificate"),
    ("127.0.0.1", False, False, "Validation of SSL server certificate failed"),
    ("localhost", False, True, "the server does not support it"),
], ids=["wrong-ca", "wrong-host", "no-tls"])
def test_mariadb_dump_itself_checks_the_certificate(my_tls_server, mariadb_server, certificates, case):
    """The tools' own check, not only opsctl's session before them: mariadb-dump with the argv opsctl gives it."""
    host, wrong_ca, plain, said = case
    files, wrong = certificates
    my_tls_server.create_user_and_database(MY_USER, MY_PASSWORD, "crm_" + uuid.uuid4().hex[:8])
    mariadb_server.create_user_and_database(MY_USER, MY_PASSWORD, "crm_" + uuid.uuid4().hex[:8])
    good = MySQLServer("localhost", my_tls_server.port, MY_USER, MY_PASSWORD, tls=Tls("verify-full", files.ca))
    server = MySQLServer(host, (mariadb_server if plain else my_tls_server).port, MY_USER, MY_PASSWORD,
                         tls=Tls("verify-full", wrong if wrong_ca else files.ca))
    assert run_mariadb_dump(good).returncode == 0
    failed = run_mariadb_dump(server)
    assert failed.returncode != 0 and said in failed.stderr, failed.stderr


def run_mariadb_dump(server: MySQLServer) -> subprocess.CompletedProcess[str]:
    with server.defaults_file() as fd:
        argv = [*server.tool_argv(shutil.which("mariadb-dump") or "mariadb-dump", fd), "--no-data", "mysql"]
        return subprocess.run(argv, pass_fds=(fd,), capture_output=True, text=True, check=False, timeout=60)
