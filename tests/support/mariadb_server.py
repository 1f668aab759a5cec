"""A throwaway MariaDB server for tests: its own data folder, a free loopback port, a private socket."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pymysql

from tests.support.servers import LOOPBACK, free_port

if TYPE_CHECKING:
    from tests.support.certs import ServerFiles

# What the README documents for the opsctl user: reading and locking to back up, creating to restore.
BACKUP_AND_RESTORE_PRIVILEGES = ("SELECT, SHOW VIEW, TRIGGER, EVENT, RELOAD, LOCK TABLES, INSERT, CREATE, DROP, "
                                 "ALTER, INDEX, REFERENCES, CREATE VIEW, CREATE ROUTINE, ALTER ROUTINE")


def mariadb_binaries() -> dict[str, str | None]:
    """The server-side programs the fixture needs (None when one is not installed)."""
    names = ("mariadb-install-db", "mariadbd")
    return {name: shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin") for name in names}


class MariaDBServer:
    """mariadbd as the mysql user when we are root (it refuses root), else as ourselves.

    root@localhost has no password and reaches the server only through the private socket;
    --skip-name-resolve makes TCP logins come from '127.0.0.1', which root is not allowed from.
    """

    def __init__(self, tls: ServerFiles | None = None) -> None:
        """With `tls`: the server offers TLS with that certificate (users still choose whether to REQUIRE SSL)."""
        self.tls = tls
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="opsctl-test-mariadb-"))
        self.data = self.root / "data"
        self.socket = self.root / "mysqld.sock"
        self.tmp = self.root / "tmp"
        self._user = "mysql" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
        self._proc: subprocess.Popen | None = None

    def start(self) -> MariaDBServer:
        if os.geteuid() == 0:  # the pid file, socket and data live here: mysql must own the folder
            pw = pwd.getpwnam("mysql")
            self.root.chmod(0o750)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        # A private tmpdir: bootstraps running side by side (one per xdist worker) otherwise collide on
        # their temporary tables in /tmp ("Unknown table 'mysql.tmp_user_sys'").
        self.tmp.mkdir()
        if os.geteuid() == 0:
            os.chown(self.tmp, pw.pw_uid, pw.pw_gid)
        installed = subprocess.run([mariadb_binaries()["mariadb-install-db"], "--no-defaults", f"--datadir={self.data}",
                                    f"--user={self._user}", "--auth-root-authentication-method=normal",
                                    "--skip-test-db", f"--tmpdir={self.tmp}"], capture_output=True, text=True,
                                    check=False)
        if installed.returncode != 0:
            raise RuntimeError(f"mariadb-install-db failed: {installed.stdout[-2000:]} {installed.stderr[-2000:]}")
        self._proc = subprocess.Popen(
            [mariadb_binaries()["mariadbd"], "--no-defaults", f"--user={self._user}", f"--datadir={self.data}",
             f"--socket={self.socket}", f"--port={self.port}", f"--tmpdir={self.tmp}", f"--bind-address={LOOPBACK}",
             f"--pid-file={self.root / 'mariadbd.pid'}", f"--log-error={self.root / 'error.log'}",
             "--skip-name-resolve", "--log-bin=binlog", "--server-id=1", "--log-bin-trust-function-creators=1",
             "--innodb-buffer-pool-size=256M",
             "--innodb-flush-log-at-trx-commit=0", "--sync-binlog=0", "--innodb-doublewrite=0",
             "--character-set-server=utf8mb4", "--collation-server=utf8mb4_unicode_ci", *self._tls_options()],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.wait_ready()
        return self

    def _tls_options(self) -> list[str]:
        """Copies of the certificate, key and CA that mariadbd (the mysql user, when we are root) can read."""
        if self.tls is None:
            return []
        copies = {}
        for option, source in (("cert", self.tls.cert), ("key", self.tls.key), ("ca", self.tls.ca)):
            copy = self.root / f"tls-{source.name}"
            shutil.copyfile(source, copy)
            copy.chmod(0o600)
            if os.geteuid() == 0:
                pw = pwd.getpwnam("mysql")
                os.chown(copy, pw.pw_uid, pw.pw_gid)
            copies[option] = copy
        return [f"--ssl-cert={copies['cert']}", f"--ssl-key={copies['key']}", f"--ssl-ca={copies['ca']}"]

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.connect().close()
            except pymysql.err.OperationalError:
                if self._proc.poll() is not None:
                    raise RuntimeError(f"mariadbd exited: {self.error_log()[-2000:]}") from None
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
            else:
                return

    def error_log(self) -> str:
        log = self.root / "error.log"
        return log.read_text(errors="replace") if log.exists() else ""

    def connect(self, database: str | None = None, user: str = "root", password: str = "",
                autocommit: bool = True) -> pymysql.connections.Connection:
        """root through the socket; any other user over TCP, as opsctl connects."""
        where = {"unix_socket": str(self.socket)} if user == "root" else {"host": LOOPBACK, "port": self.port}
        return pymysql.connect(user=user, password=password, database=database, autocommit=autocommit,
                               charset="utf8mb4", **where)

    def create_user_and_database(self, user: str, password: str, database: str) -> None:
        """A user with the privileges the README asks for, and an empty database it also writes as the CRM would."""
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute("CREATE USER IF NOT EXISTS %s@'127.0.0.1' IDENTIFIED BY %s", (user, password))
            cur.execute(f"GRANT {BACKUP_AND_RESTORE_PRIVILEGES} ON *.* TO %s@'127.0.0.1'", (user,))
            cur.execute(f"CREATE DATABASE `{database}`")
            cur.execute(f"GRANT ALL PRIVILEGES ON `{database}`.* TO %s@'127.0.0.1'", (user,))

    @contextmanager
    def granted(self, user: str, privileges: str) -> Iterator[None]:
        """Privileges on *.* that `user` holds only inside the block (e.g. for a test to tamper as it)."""
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute(f"GRANT {privileges} ON *.* TO %s@'127.0.0.1'", (user,))
        try:
            yield
        finally:
            with self.connect() as conn, conn.cursor() as cur:
                cur.execute(f"REVOKE {privileges} ON *.* FROM %s@'127.0.0.1'", (user,))

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
