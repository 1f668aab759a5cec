"""Encryption in transit to a database server: the policy's tls settings and the CA files they may trust."""

from __future__ import annotations

import ipaddress
import ssl
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from opsctl.policy.fields import PolicyPath, Strict, opens_files
from opsctl.policy.trust import untrusted

TlsMode = Literal["disable", "require", "verify-ca", "verify-full"]
VERIFYING_TLS_MODES = ("verify-ca", "verify-full")
# Debian's bundle of the system's trusted CAs. Named explicitly: libpq 15 has no sslrootcert=system, and its
# default (~/.postgresql/root.crt) would depend on the home folder of whoever runs opsctl.
SYSTEM_CA_FILE = Path("/etc/ssl/certs/ca-certificates.crt")


def is_local_host(host: str) -> bool:
    """A Unix socket or a loopback name or address: traffic that never leaves this machine."""
    if "," in host:  # libpq tries each host of a list in turn: one remote is enough to leave the machine
        return False
    if host.startswith(("/", "@")) or host.lower() == "localhost":  # not "localhost.": that one goes to DNS
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def usable_ca_file(path: Path, field: str) -> Path:
    """A CA certificate file opsctl may trust: there, holding a certificate, and changeable by nobody else
    (whoever can change it can make opsctl trust their server, and send it a password)."""
    if not path.is_file():
        raise ValueError(f"{field} {path} does not exist or is not a file; give the PEM file of the CA that signed "
                         "the server's certificate")
    distrust = untrusted(path)
    if distrust is not None:
        raise ValueError(str(distrust))
    try:
        ssl.create_default_context(cafile=str(path))
    except (ssl.SSLError, OSError):
        raise ValueError(f"{field} {path} holds no PEM certificate; give the CA certificate that signed the "
                         "server's (a file that starts with -----BEGIN CERTIFICATE-----)") from None
    return path


class DatabaseTls(Strict):
    """Encryption in transit to the database server, in PostgreSQL's sslmode words (MySQL/MariaDB too)."""

    mode: TlsMode | None = Field(
        None, description="disable, require, verify-ca or verify-full; default: verify-full for a host that is not "
                          "loopback or a socket (there: the client's own default)")
    ca_file: PolicyPath | None = Field(
        None, description="PEM file with the CA certificate(s) that signed the server's certificate; "
                          f"default for the verify modes: the system's trust store {SYSTEM_CA_FILE}")

    @field_validator("ca_file")
    @classmethod
    def _trusted_ca(cls, path: Path | None, info: ValidationInfo) -> Path | None:
        return None if path is None or not opens_files(info) else usable_ca_file(path, "tls.ca_file")
