"""Threat 3, transport: no ssh_config of the user or the system weakens the SFTP pinning, and an S3
endpoint is reached over verified TLS (a private CA by ca_file) unless plain HTTP is explicitly allowed.

ssh reads ~/.ssh/config from the passwd entry's home, not $HOME: the hostile configuration is put in
place for one opsctl process only, in a private mount namespace (`unshare --mount`) where a copy of
/etc/passwd names a temporary home and /etc/ssh/ssh_config is a hostile one. Nothing outside changes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require
from tests.support.bank import make_bank
from tests.support.moto import MotoServer, Tls, moto_server_binary
from tests.support.targets import s3_target, sftp_target
from tests.support.workspace import REPO_ROOT, Result, Workspace

# In the namespace: $1 (a passwd copy) over /etc/passwd, $2 over /etc/ssh/ssh_config, then run the rest.
ISOLATE = 'mount --bind "$1" /etc/passwd && mount --bind "$2" /etc/ssh/ssh_config && shift 2 && exec "$@"'


class HostileSsh:
    """A home and a system ssh_config that try every way around the policy's pinning, each leaving a mark."""

    def __init__(self, root: Path, vouched_key: str) -> None:
        self.home = root / "home"
        (self.home / ".ssh").mkdir(parents=True)
        self.marks = root / "marks"
        self.marks.mkdir()
        self.evil_known_hosts = root / "evil_known_hosts"
        self.evil_known_hosts.write_text(f"* {vouched_key}\n[127.0.0.1]:* {vouched_key}\nevil.example {vouched_key}\n")
        vouch = f"/bin/sh -c 'touch {self.marks}/knownhostscommand; cat {self.evil_known_hosts}'"
        config = (f"Host *\n"
                  f"  ProxyCommand /bin/sh -c 'touch {self.marks}/proxycommand; exit 1'\n"
                  f"  KnownHostsCommand {vouch}\n"
                  f"  UserKnownHostsFile {self.evil_known_hosts}\n"
                  f"  GlobalKnownHostsFile {self.evil_known_hosts}\n"
                  f"  HostKeyAlias evil.example\n"
                  f"  StrictHostKeyChecking no\n"
                  f"  IdentityFile {root}/no-such-key\n"
                  f"  LocalCommand touch {self.marks}/localcommand\n"
                  f"  PermitLocalCommand yes\n")
        (self.home / ".ssh" / "config").write_text(config)
        (self.home / ".ssh" / "known_hosts").write_text(self.evil_known_hosts.read_text())  # paramiko's "system" keys
        self.system_config = root / "ssh_config"
        self.system_config.write_text(config)
        self.passwd = root / "passwd"
        me = os.getuid()
        lines = [self._rehome(line, me) for line in Path("/etc/passwd").read_text().splitlines()]
        self.passwd.write_text("\n".join(lines) + "\n")

    def _rehome(self, line: str, uid: int) -> str:
        fields = line.split(":")
        if len(fields) >= 7 and fields[2] == str(uid):
            fields[5] = str(self.home)
        return ":".join(fields)

    def run(self, argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", ISOLATE, "sh",
                               str(self.passwd), str(self.system_config), *argv],
                              env={**env, "HOME": str(self.home)}, cwd=cwd, capture_output=True, text=True,
                              timeout=600, stdin=subprocess.DEVNULL, check=False)

    def opsctl(self, ws: Workspace, *args: str) -> Result:
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "XDG_CACHE_HOME": str(ws.root / ".cache")}
        env.pop("OPSCTL_POLICY", None)
        proc = self.run([sys.executable, "-m", "opsctl", "--policy", str(ws.root / "policy.yaml"), *args], env, ws.root)
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def left_marks(self) -> list[str]:
        return sorted(p.name for p in self.marks.iterdir())


@pytest.fixture
def can_isolate() -> None:
    require(os.geteuid() == 0 and shutil.which("unshare") is not None,
            "root and unshare (a private mount namespace for a hostile ssh_config)")
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"], capture_output=True, check=False)
    require(probe.returncode == 0 and Path("/etc/ssh/ssh_config").is_file(), "mount namespaces and /etc/ssh/ssh_config")


def other_key(root: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / "other")], check=True)
    return " ".join((root / "other.pub").read_text().split()[:2])


def test_hostile_ssh_config_neither_proxies_nor_repins_the_nas(workspace, sftp_endpoint, can_isolate):  # noqa: ARG001
    hostile = HostileSsh(workspace.root / "hostile", other_key(workspace.root))
    make_bank(workspace.root / "bank.sqlite3")
    workspace.write_policy({"engine": "sqlite", "path": "bank.sqlite3"}, [sftp_target(sftp_endpoint)])
    for command in (("init",), ("backup",), ("snapshots",)):
        result = hostile.opsctl(workspace, *command)
        assert result.returncode == 0, (command, result.output)
    assert "bank" in result.stdout
    assert hostile.left_marks() == []  # no ProxyCommand, KnownHostsCommand or LocalCommand ever ran


def test_hostile_known_hosts_command_cannot_vouch_for_a_changed_host_key(workspace, sftp_endpoint, can_isolate):  # noqa: ARG001
    """The NAS's key changes (an interception); a KnownHostsCommand says the new key is fine: still refused."""
    sftp_endpoint.rotate_host_key()
    new_key = " ".join(sftp_endpoint.host_key.with_suffix(".pub").read_text().split()[:2])
    hostile = HostileSsh(workspace.root / "hostile", new_key)
    workspace.write_policy({"engine": "sqlite", "path": "bank.sqlite3"}, [sftp_target(sftp_endpoint)])
    from opsctl.policy import load_policy
    from opsctl.targets import target_for

    argv = target_for(load_policy(workspace.root / "policy.yaml").targets[0]).ssh_command()
    # Only the KnownHostsCommand, so nothing else in the hostile config stops ssh first.
    hostile.system_config.write_text(f"Host *\n  KnownHostsCommand /bin/sh -c 'touch {hostile.marks}/knownhostscommand;"
                                     f" cat {hostile.evil_known_hosts}'\n")
    (hostile.home / ".ssh" / "config").write_text(hostile.system_config.read_text())
    ssh = hostile.run([*argv[:-2], "true"], dict(os.environ), workspace.root)
    assert ssh.returncode != 0, ssh.stdout + ssh.stderr
    assert "host key" in ssh.stderr.lower(), ssh.stderr
    assert hostile.left_marks() == []


def test_plain_http_endpoint_is_refused_before_anything_runs(workspace, s3_endpoint):
    make_bank(workspace.root / "bank.sqlite3")
    entry = s3_target(s3_endpoint, workspace)
    del entry["allow_plain_http"]
    workspace.write_policy({"engine": "sqlite", "path": "bank.sqlite3"}, [entry])
    result = workspace.opsctl("backup")
    assert result.returncode == 2, result.output
    assert "targets[0].endpoint" in result.output and "allow_plain_http" in result.output


@pytest.fixture
def tls_moto(tmp_path_factory) -> MotoServer:
    binary = moto_server_binary()
    require(binary is not None and shutil.which("openssl") is not None, "moto_server and openssl")
    folder = tmp_path_factory.mktemp("tls")
    tls = _certificates(folder)
    server = MotoServer(binary, tls=tls).start()
    yield server
    server.cleanup()


def _certificates(folder: Path) -> Tls:
    """A private CA, and a certificate for 127.0.0.1 signed by it."""
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=opsctl test CA")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=127.0.0.1")
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.pem", "-days", "2", "-extfile", "san.ext")
    return Tls(folder / "server.pem", folder / "server.key", folder / "ca.pem")


def test_https_endpoint_with_a_private_ca_is_verified_by_opsctl_and_restic(workspace, tls_moto):
    make_bank(workspace.root / "bank.sqlite3")
    ca = workspace.root / "ca.pem"
    shutil.copy(tls_moto.tls.ca, ca)
    entry = s3_target(tls_moto, workspace, ca_file="ca.pem")
    del entry["allow_plain_http"]
    workspace.write_policy({"engine": "sqlite", "path": "bank.sqlite3"}, [entry])
    for command in (("init",), ("backup",), ("snapshots",)):
        result = workspace.opsctl(*command)
        assert result.returncode == 0, (command, result.output)
    assert "bank" in result.stdout
    # The same endpoint without the CA: its certificate is refused, by opsctl's probe and by restic.
    del entry["ca_file"]
    workspace.write_policy({"engine": "sqlite", "path": "bank.sqlite3"}, [entry])
    refused = workspace.opsctl("backup")
    assert refused.returncode == 1 and "SSLError" in refused.output, refused.output
