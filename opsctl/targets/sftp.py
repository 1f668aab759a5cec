"""A repository on a NAS reached over SSH: restic's sftp backend, paramiko for opsctl's own checks and copies.

The host key is always pinned by the policy's known_hosts file; opsctl never turns host-key checking off.
"""

from __future__ import annotations

import posixpath
import re
import secrets
import stat
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress

import paramiko

from opsctl.policy.model import SftpTargetConfig
from opsctl.restic.repository import Repository
from opsctl.targets import fleet
from opsctl.targets.base import ConfiguredTarget, Fact, repository_folders
from opsctl.targets.errors import TargetFull, TargetUnreachable, hostile
from opsctl.targets.fleet_sftp import SftpFleet
from opsctl.targets.replicate import MAX_FILE_SIZE, TOO_BIG, check_writable

CONNECT_TIMEOUT_S = 15
SSH_PORT = 22  # the default: not written into display names and ssh-keyscan hints
_LISTERS = 4
_KEEPALIVE_S = 30
_PARALLEL_LISTING_FROM = 8  # folders; fewer are listed over the one session (extra channels cost round trips)
SPOOL = ".opsctl-incoming"
# What write_new names its spooled copies (restic's files, and the audit trail's batches).
_AUDIT_CHAIN = re.compile(r"[0-9a-f]{16}")  # opsctl-audit/<chain>: the audit trail's copies
_SPOOLED = re.compile(r"(?:[0-9a-f]{64}|config|\d{10}-\d{10}\.jsonl)\.[0-9a-f]{8}")
_DATA_FOLDER = re.compile(r"[0-9a-f]{2}")
# What restic's ssh may do, whatever ssh_config says elsewhere: only the policy's known_hosts (no
# global file, no command, no alias, no learning new keys), only the policy's key (no agent), a direct
# connection (no proxy, no shared master connection), no forwarding, no local command.
_PINNED_SSH_OPTIONS = (
    "GlobalKnownHostsFile=/dev/null", "KnownHostsCommand=none", "StrictHostKeyChecking=yes", "UpdateHostKeys=no",
    "CheckHostIP=no", "VerifyHostKeyDNS=no", "BatchMode=yes", "IdentitiesOnly=yes", "IdentityAgent=none",
    "PubkeyAuthentication=yes", "PasswordAuthentication=no", "KbdInteractiveAuthentication=no",
    "HostbasedAuthentication=no", "GSSAPIAuthentication=no", "ProxyCommand=none", "ProxyJump=none",
    "ControlMaster=no", "ControlPath=none", "ForwardAgent=no", "ForwardX11=no", "ClearAllForwardings=yes",
    "PermitLocalCommand=no", "CanonicalizeHostname=no",
)


class SftpTarget(ConfiguredTarget[SftpTargetConfig]):
    kind = "sftp"

    @property
    def display(self) -> str:
        return f"{self.name} (sftp {self._where()}:{self.config.path})"

    def _where(self) -> str:
        c = self.config
        return f"{c.user}@{c.host}" + ("" if c.port == SSH_PORT else f":{c.port}")

    def repository(self, password: bytes) -> Repository:
        c = self.config
        return Repository(location=f"sftp:{c.user}@{c.host}:{c.path}", display=self.display, password=password,
                          options=(f"sftp.command={' '.join(self.ssh_command())}",))

    def ssh_command(self) -> list[str]:
        """The ssh command restic runs; the policy validates every piece so restic's splitter keeps it intact.

        `-F /dev/null`: no user or system ssh_config is read, so none can add a ProxyCommand, a
        KnownHostsCommand, a HostKeyAlias or another key; the options below are all ssh uses.
        """
        c = self.config
        options = [f"UserKnownHostsFile={c.known_hosts}", *_PINNED_SSH_OPTIONS,
                   f"ConnectTimeout={CONNECT_TIMEOUT_S}", "ServerAliveInterval=15", "ServerAliveCountMax=4"]
        return ["ssh", "-F", "/dev/null", "-p", str(c.port), "-i", str(c.identity_file),
                *(word for option in options for word in ("-o", option)), f"{c.user}@{c.host}", "-s", "sftp"]

    def probe(self) -> None:
        with self._session():
            pass

    def prepare_init(self) -> None:
        """restic creates the folder; opsctl only checks that it can log in."""
        self.probe()

    @contextmanager
    def files(self) -> Iterator[SftpFiles]:
        with self._session() as sftp:
            yield SftpFiles(sftp, self.config.path, self.display)

    @contextmanager
    def fleet(self) -> Iterator[SftpFleet]:
        folder = fleet.sftp_folder(self.config.path)
        with self._session() as sftp:
            yield SftpFleet(sftp, folder, f"{self.name} (sftp {self._where()}:{folder})")

    @contextmanager
    def _session(self) -> Iterator[paramiko.SFTPClient]:
        client = paramiko.SSHClient()
        try:
            self._connect(client)
            yield self._open_sftp(client)
        finally:
            client.close()

    def _open_sftp(self, client: paramiko.SSHClient) -> paramiko.SFTPClient:
        try:
            transport = _transport(client)
            # Keepalives: a connection opened early and idle through a long backup must not be dropped by a NAT.
            transport.set_keepalive(_KEEPALIVE_S)
            # Each step under the stall timeout: paramiko's open_sftp waits up to an hour for the channel, and
            # without a limit for the SFTP version exchange (a NAS whose sftp-server hangs would hold the job).
            channel = transport.open_session(timeout=self.stall_timeout_s)
            channel.settimeout(self.stall_timeout_s)
            channel.invoke_subsystem("sftp")
            sftp = paramiko.SFTPClient(channel)
        except (paramiko.SSHException, OSError) as exc:
            raise TargetUnreachable(f"{self.display}: the NAS accepted the login but offers no SFTP ({exc})",
                                    "enable the SFTP subsystem for this user on the NAS") from None
        return sftp

    def facts(self) -> list[Fact]:
        c = self.config
        try:
            self.probe()
        except TargetUnreachable as exc:
            return [Fact("ssh login", False, exc.message, exc.hint)]
        return [Fact("host key", True, f"pinned by {c.known_hosts}"),
                Fact("ssh login", True, f"key {c.identity_file} accepted"),
                Fact("free space", True, "not reported over SFTP; watch the NAS's own alerts")]

    def _connect(self, client: paramiko.SSHClient) -> None:
        c = self.config
        try:
            # Only the policy's file: never load_system_host_keys() (~/.ssh/known_hosts), never an ssh_config.
            client.load_host_keys(str(c.known_hosts))
        except (OSError, paramiko.SSHException) as exc:
            raise TargetUnreachable(f"{self.display}: cannot read known_hosts {c.known_hosts} ({exc})",
                                    _pin_hint(c)) from None
        except paramiko.hostkeys.InvalidHostKey:
            raise TargetUnreachable(f"{self.display}: known_hosts {c.known_hosts} holds a line that is not a host key",
                                    f"remove that line, then {_pin_hint(c)}") from None
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            client.connect(c.host, port=c.port, username=c.user, key_filename=str(c.identity_file),
                           look_for_keys=False, allow_agent=False, timeout=CONNECT_TIMEOUT_S,
                           banner_timeout=CONNECT_TIMEOUT_S, auth_timeout=CONNECT_TIMEOUT_S)
        except paramiko.BadHostKeyException:
            raise TargetUnreachable(
                f"{self.display}: the NAS presented a DIFFERENT host key than the one pinned in {c.known_hosts}",
                "if the NAS was really reinstalled, verify its new key fingerprint with its administrator, then "
                + _pin_hint(c) + "; otherwise treat this as a possible interception and stop",
            ) from None
        except paramiko.PasswordRequiredException:
            raise TargetUnreachable(f"{self.display}: the key {c.identity_file} is protected by a passphrase",
                                    "use a key without a passphrase, readable only by the backup user") from None
        except paramiko.AuthenticationException:
            raise TargetUnreachable(f"{self.display}: the NAS refused the key {c.identity_file} for user {c.user}",
                                    f"add the public key to ~{c.user}/.ssh/authorized_keys on the NAS") from None
        except paramiko.SSHException as exc:
            if "not found in known_hosts" in str(exc):
                raise TargetUnreachable(f"{self.display}: the NAS host key is not pinned in {c.known_hosts}",
                                        _pin_hint(c)) from None
            raise TargetUnreachable(f"{self.display}: SSH failed ({exc})",
                                    "check the NAS and its SSH service") from None
        except (TimeoutError, OSError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc) or exc.__class__.__name__
            raise TargetUnreachable(f"{self.display} cannot be reached: {reason}",
                                    "check that the NAS is up and its SSH port is open") from None


def _pin_hint(c: SftpTargetConfig) -> str:
    where = c.host if c.port == SSH_PORT else f"-p {c.port} {c.host}"
    return f"pin the key with: ssh-keyscan {where} >> {c.known_hosts}"


class SftpFiles:
    """A repository's files over one SFTP session; new files are written aside, then renamed in place.

    OpenSSH's SFTP rename refuses to replace an existing file, so a file is never overwritten. The NAS
    may be hostile: listings come from lstat, a link anywhere in the repository is refused, and the
    clean-up deletes only opsctl's own spooled names.
    """

    def __init__(self, sftp: paramiko.SFTPClient, root: str, display: str) -> None:
        self.sftp = sftp
        self.root = root
        self.display = display
        self._spool = posixpath.join(root, SPOOL)
        self._made: set[str] = set()

    def list(self, folder: str) -> set[str]:
        found: set[str] = set()
        if self._folder_kind(folder) is not None:
            self._walk(folder, found)
        return found

    def clean_spool(self, older_than_s: float = 3600) -> None:
        """Remove half-written copies a killed run left behind (never a live run's: they are young)."""
        if self._folder_kind(SPOOL) is None:
            return
        for entry in self.sftp.listdir_attr(self._spool):
            mode = entry.st_mode or 0
            if (_SPOOLED.fullmatch(entry.filename) and stat.S_ISREG(mode)
                    and time.time() - (entry.st_mtime or 0) > older_than_s):
                self._remove_quietly(posixpath.join(self._spool, entry.filename))

    def _folder_kind(self, relative: str) -> int | None:
        """A folder's mode by lstat (None when missing); a link or a file in its place is refused."""
        try:
            mode = self.sftp.lstat(posixpath.join(self.root, relative)).st_mode or 0
        except FileNotFoundError:
            return None
        if not stat.S_ISDIR(mode):
            raise hostile(self.display, _odd(mode) if stat.S_ISLNK(mode) else "a file where restic keeps a folder",
                          relative)
        return mode

    def _walk(self, relative: str, found: set[str]) -> None:
        subfolders = []
        for entry in self._entries(self.sftp, relative):
            name = f"{relative}/{entry.filename}"
            mode = entry.st_mode or 0
            if stat.S_ISDIR(mode):
                if (relative == "data" and _DATA_FOLDER.fullmatch(entry.filename)) or \
                        (relative == "opsctl-audit" and _AUDIT_CHAIN.fullmatch(entry.filename)):
                    subfolders.append(name)  # restic (and opsctl's audit copies) keep no other folder
            else:
                found.add(self._plain(name, mode))
        if subfolders:
            found.update(self._list_files(subfolders))

    def _plain(self, name: str, mode: int) -> str:
        """A listed name, refused when it is a link or a device (listings carry lstat's mode: no extra trip)."""
        if stat.S_ISLNK(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
            raise hostile(self.display, _odd(mode), name)
        return name

    def _list_files(self, folders: Sequence[str]) -> set[str]:
        """Files of many folders (data/00..ff) over a few SFTP channels at once: 256 round trips hurt on a WAN."""
        channel = self.sftp.get_channel()
        transport = channel.get_transport() if channel is not None else None
        if transport is None or len(folders) < _PARALLEL_LISTING_FROM:
            return self._files_in(self.sftp, folders)
        shares = [folders[i::_LISTERS] for i in range(_LISTERS)]
        with ThreadPoolExecutor(max_workers=_LISTERS) as pool:
            parts = pool.map(lambda share: self._list_with_own_channel(transport, share), shares)
            return set().union(*parts)

    def _list_with_own_channel(self, transport: paramiko.Transport, folders: Sequence[str]) -> set[str]:
        # One SFTPClient must not serve two threads' requests at once (responses get mixed up).
        with paramiko.SFTPClient.from_transport(transport) as sftp:
            channel, main = sftp.get_channel(), self.sftp.get_channel()
            if channel is not None and main is not None:  # a NAS that stops answering must not hang the listing
                channel.settimeout(main.gettimeout())
            return self._files_in(sftp, folders)

    def _files_in(self, sftp: paramiko.SFTPClient, folders: Sequence[str]) -> set[str]:
        return {self._plain(f"{f}/{e.filename}", e.st_mode or 0) for f in folders for e in self._entries(sftp, f)
                if not stat.S_ISDIR(e.st_mode or 0)}

    def _entries(self, sftp: paramiko.SFTPClient, relative: str) -> Sequence[paramiko.SFTPAttributes]:
        try:
            entries: Sequence[paramiko.SFTPAttributes] = sftp.listdir_attr(posixpath.join(self.root, relative))
        except FileNotFoundError:
            return []
        return entries

    def read(self, name: str) -> bytes:
        check_writable(name, self.display)
        with self.sftp.open(posixpath.join(self.root, name), "rb") as handle:
            attrs = handle.stat()  # prefetch would ask for it anyway: no extra round trip
            if not stat.S_ISREG(attrs.st_mode or 0):  # e.g. a link to a device: reading would never end
                raise hostile(self.display, _odd(attrs.st_mode or 0), name)
            if (attrs.st_size or 0) > MAX_FILE_SIZE:  # would queue requests, and memory, without end
                raise hostile(self.display, TOO_BIG, name)
            handle.prefetch(attrs.st_size)
            data: bytes = handle.read(MAX_FILE_SIZE + 1)  # the size a server reports may be a lie
            if len(data) > MAX_FILE_SIZE:
                raise hostile(self.display, TOO_BIG, name)
            return data

    def exists(self, name: str) -> bool:
        check_writable(name, self.display)
        try:
            mode = self.sftp.lstat(posixpath.join(self.root, name)).st_mode or 0
        except FileNotFoundError:
            return False
        self._plain(name, mode)
        return True

    def make_layout(self) -> None:
        for folder in repository_folders():
            self._mkdirs(posixpath.join(self.root, folder))

    def write_new(self, name: str, content: bytes) -> bool:
        check_writable(name, self.display)
        final = posixpath.join(self.root, name)
        self._mkdirs(posixpath.dirname(final))
        self._mkdirs(self._spool)
        spooled = posixpath.join(self._spool, f"{posixpath.basename(name)}.{secrets.token_hex(4)}")
        try:
            with self.sftp.open(spooled, "wxb") as handle:  # O_EXCL: never into a name (or link) already there
                handle.chmod(0o600)  # before any byte: the NAS's umask may let other accounts read
                handle.set_pipelined(True)
                handle.write(content)
            if self.exists(name):
                return False
            self.sftp.rename(spooled, final)
        except OSError as exc:
            if self.exists(name):
                return False
            if (exc.errno is None and str(exc) in ("Failure", "")) or "no space" in str(exc).lower():
                # OpenSSH's sftp-server reports a full disk or quota as a bare "Failure".
                raise TargetFull(f"{self.display} refused the write (usually a full disk or quota)",
                                 "free space on the NAS; the next backup completes the copy") from None
            raise
        else:
            return True
        finally:
            self._remove_quietly(spooled)

    def _remove_quietly(self, path: str) -> None:
        with suppress(OSError):
            self.sftp.remove(path)

    def _mkdirs(self, path: str) -> None:
        """Make a folder of the repository (and its parents); checked by lstat once a session: never a link."""
        if path in self._made or path in ("", "/"):
            return
        inside = path != self.root and path.startswith(self.root.rstrip("/") + "/")
        try:
            mode = self.sftp.lstat(path).st_mode or 0
        except FileNotFoundError:
            self._mkdirs(posixpath.dirname(path))
            try:
                self.sftp.mkdir(path, mode=0o700)
            except OSError:
                mode = self.sftp.lstat(path).st_mode or 0  # made by someone else meanwhile is fine
            else:
                mode = stat.S_IFDIR
        if inside and not stat.S_ISDIR(mode):  # above the root, the path is the operator's own
            raise hostile(self.display, _odd(mode) if stat.S_ISLNK(mode) else "a file where restic keeps a folder",
                          posixpath.relpath(path, self.root))
        self._made.add(path)


def _odd(mode: int) -> str:
    return "a symbolic link" if stat.S_ISLNK(mode) else "a device, pipe or socket where restic keeps a file"


def _transport(client: paramiko.SSHClient) -> paramiko.Transport:
    transport = client.get_transport()
    if transport is None:
        raise paramiko.SSHException("the connection closed after the login")
    return transport
