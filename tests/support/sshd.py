"""A throwaway OpenSSH server on a free loopback port, for SFTP targets, run as the current user."""

from __future__ import annotations

import contextlib
import getpass
import os
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.servers import LOOPBACK, free_port

SSHD = "/usr/sbin/sshd"  # sshd must be started by its absolute path (it re-executes itself)


def _descendants(pid: int) -> list[int]:
    """The pids of a process's children, grandchildren, ... (from /proc)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


class SshServer:
    """sshd -D on 127.0.0.1:port with its own host key, accepting one throwaway key for the current user.

    As root it is a normal sshd; as another user it runs unprivileged, which is enough to log in as
    that same user (UsePAM no). Per-connection processes are killed by stop(), like a server going down.
    """

    host = LOOPBACK

    def __init__(self) -> None:
        self.port = free_port()
        self.user = getpass.getuser()
        self.dir = Path(tempfile.mkdtemp(prefix="opsctl-test-sshd-"))
        self.root = self.dir / "repos"  # where tests put their repositories
        self.root.mkdir()
        self.host_key = self.dir / "ssh_host_ed25519_key"
        self.identity_file = self.dir / "id_ed25519"
        self.known_hosts = self.dir / "known_hosts"  # pins the original host key
        self._live_known_hosts = self.dir / "known_hosts.live"  # the current host key: start()'s own check
        self.config = self.dir / "sshd_config"
        self.log = self.dir / "sshd.log"
        self._process: subprocess.Popen | None = None
        self._keygen(self.host_key)
        self._original_host_key = [(p, p.read_bytes()) for p in (self.host_key, self.host_key.with_suffix(".pub"))]
        self._keygen(self.identity_file)
        shutil.copy2(self.identity_file.with_suffix(".pub"), self.dir / "authorized_keys")
        self.known_hosts.write_text(self._known_hosts_line())
        self._write_config()

    def _keygen(self, path: Path) -> None:
        for old in (path, path.with_suffix(".pub")):
            old.unlink(missing_ok=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "opsctl-test", "-f", str(path)],
                       check=True, capture_output=True)

    def _known_hosts_line(self) -> str:
        kind, key = self.host_key.with_suffix(".pub").read_text().split()[:2]
        return f"[{self.host}]:{self.port} {kind} {key}\n"

    def _write_config(self) -> None:
        self.config.write_text(f"""\
ListenAddress {self.host}:{self.port}
HostKey {self.host_key}
PidFile {self.dir / "sshd.pid"}
AuthorizedKeysFile {self.dir / "authorized_keys"}
AllowUsers {self.user}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin prohibit-password
StrictModes no
UseDNS no
PrintMotd no
Subsystem sftp internal-sftp
LogLevel VERBOSE
""")

    # --- client side -------------------------------------------------------------------------

    def ssh_argv(self, known_hosts: Path | None = None) -> list[str]:
        """ssh with this server's port, key and pinned host key; append the command."""
        # IdentitiesOnly: an ssh-agent full of keys would otherwise exhaust MaxAuthTries first
        return ["ssh", "-p", str(self.port), "-i", str(self.identity_file),
                "-o", f"UserKnownHostsFile={known_hosts or self.known_hosts}", "-o", "BatchMode=yes",
                "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=5", f"{self.user}@{self.host}"]

    def sftp_command(self) -> str:
        """The value of restic's `-o sftp.command=...` (0.14 ignores the port of an sftp: URL)."""
        return shlex.join([*self.ssh_argv(), "-s", "sftp"])

    def repository(self, path: str | Path) -> str:
        """restic's repository string for a folder under root (or an absolute path)."""
        return f"sftp:{self.user}@{self.host}:{self.root / path}"

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 15) -> SshServer:
        """Start sshd and wait until a real `ssh ... true` logs in."""
        if self.running:
            return self
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation chroot
        self._live_known_hosts.write_text(self._known_hosts_line())
        with open(self.log, "ab") as log:
            self._process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.config)], stdin=subprocess.DEVNULL,
                                             stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            problem = self._check()
            if problem is None:
                return self
            if not self.running or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"sshd on {self.host}:{self.port} did not accept a login ({problem}); "
                                   f"its log:\n{self.log.read_text(errors='replace')[-4000:]}")
            time.sleep(0.1)

    def _check(self) -> str | None:
        """None when sshd accepts a login with the current host key, else why not."""
        try:
            socket.create_connection((self.host, self.port), timeout=1).close()
        except OSError as error:
            return f"port: {error}"
        try:
            result = subprocess.run([*self.ssh_argv(self._live_known_hosts), "true"], stdin=subprocess.DEVNULL,
                                    capture_output=True, text=True, timeout=10, check=False)
        except subprocess.TimeoutExpired:
            return "ssh did not finish within 10 s"
        return None if result.returncode == 0 else f"ssh exit {result.returncode}: {result.stderr.strip()}"

    def stop(self) -> None:
        """Kill sshd and its open sessions: the port refuses connections afterwards."""
        if self._process is None:
            return
        # each connection's sshd calls setsid(): find them through /proc, not the process group
        for pid in [*_descendants(self._process.pid), self._process.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._process.wait(timeout=10)
        self._process = None

    def restart(self) -> SshServer:
        """Stop and start again on the same port with the same keys."""
        self.stop()
        return self.start()

    def rotate_host_key(self) -> None:
        """Give the server a new host key and restart it; known_hosts still pins the old one."""
        self._keygen(self.host_key)
        self.restart()

    def reset(self) -> SshServer:
        """Running, with the original host key: what each test starts from."""
        if self.host_key.read_bytes() != self._original_host_key[0][1]:
            self.stop()
            for path, content in self._original_host_key:
                path.write_bytes(content)
        return self.start()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def freeze(server: SshServer, sig: int = signal.SIGSTOP) -> None:
    """Stop (or with SIGCONT resume) sshd and every session it serves: a NAS that hangs, not one that is gone."""
    for pid in [server._process.pid, *_descendants(server._process.pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
