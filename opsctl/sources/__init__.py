"""Database engines: one module each. Only this package starts database tools."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opsctl.errors import NotSupportedYet
from opsctl.sources.base import Destination, Dump, Source, StandbyState
from opsctl.sources.errors import DatabaseUnreachable

__all__ = ["Destination", "Dump", "Source", "StandbyState", "Tls", "sources_for"]


@dataclass(frozen=True)
class Tls:
    """Encryption in transit as the policy sets it; mode None leaves the client's own default (loopback, sockets)."""

    mode: str | None = None
    ca_file: Path | None = None  # what the verify modes check the certificate against; None for the others
    system_store: bool = False  # ca_file is the system's trust store, not the policy's tls.ca_file

    @property
    def verifies(self) -> bool:
        return self.mode in ("verify-ca", "verify-full")

    def describe(self, protocol: str | None) -> str:
        """How a session is protected, for doctor: "TLS verify-full, TLSv1.3", or "no TLS"."""
        if not protocol:
            return "no TLS"
        return f"TLS {self.mode}, {protocol}" if self.verifies else f"TLS {protocol}, certificate not checked"

    def refusal(self, lowered: str, engine: str, where: str, host: str, detail: str) -> DatabaseUnreachable | None:
        """The clear error for a TLS failure in a client's lowercased message; None when it is not one."""
        if self.mode is None or self.mode == "disable":
            return None
        cannot = f"cannot connect to {engine} at {where}"
        if "not support ssl" in lowered or "doesn't support it" in lowered or "does not support it" in lowered:
            return DatabaseUnreachable(f"{cannot}: the server does not offer TLS; tls.mode {self.mode} requires it",
                                       "turn TLS on at the server; only on a network you trust, set "
                                       "database.tls.mode: disable")
        if "does not match host name" in lowered or "mismatch" in lowered:
            # The client's own words quote the names, which redaction removes: they would add nothing.
            return DatabaseUnreachable(
                f"{cannot}: the certificate is for another host name than database.host ({host})",
                "set database.host to a name the server's certificate lists, or get a certificate for this name "
                "(tls.mode verify-ca skips the host name check)")
        if "certificate verify failed" in lowered:
            # The client's words stay: they may tell another cause, such as an expired certificate.
            return DatabaseUnreachable(
                f"{cannot}: the server's certificate is not signed by {self._ca_field()} ({detail})",
                "set database.tls.ca_file to the CA certificate that signed the server's, or check that "
                "database.host names the right server")
        return None

    def _ca_field(self) -> str:
        if self.system_store:
            return f"a CA in the system's trust store ({self.ca_file}); the policy sets no tls.ca_file"
        return f"the CA in tls.ca_file ({self.ca_file})"


# Each loader imports its engine's modules only when called: psycopg takes ~0.2 s to load,
# which SQLite policies need not pay. The config is the policy's PostgresConfig, MySQLConfig or SQLiteConfig.
Loader = Callable[[Any, str | None, Path, bool], list[Source]]


def _postgresql(config: Any, password: str | None, _scratch_dir: Path, recovery: bool) -> list[Source]:
    from opsctl.sources.pg_client import PgServer
    from opsctl.sources.postgresql import PostgresSource

    server = PgServer(host=config.host, port=config.port, user=config.user, password=password, tls=_tls(config))
    wait = int(config.lock_wait_timeout.total_seconds())
    return [PostgresSource(server, name, wait, protected=config.names, recovery=recovery) for name in config.names]


def _sqlite(config: Any, _password: str | None, scratch_dir: Path, recovery: bool) -> list[Source]:
    from opsctl.sources.sqlite import SQLiteSource

    return [SQLiteSource(config.path, config.names[0], scratch_dir, recovery=recovery)]


def _mysql(config: Any, password: str | None, _scratch_dir: Path, recovery: bool) -> list[Source]:
    from opsctl.sources.mysql import MySQLSource
    from opsctl.sources.mysql_client import MySQLServer

    server = MySQLServer(host=config.host, port=config.port, user=config.user, password=password, tls=_tls(config))
    wait = int(config.lock_wait_timeout.total_seconds())
    return [MySQLSource(server, name, wait, config.lock_non_transactional, protected=config.names, recovery=recovery)
            for name in config.names]


def _tls(config: Any) -> Tls:
    return Tls(mode=config.tls_mode, ca_file=config.tls_ca_file, system_store=config.tls.ca_file is None)


LOADERS: dict[str, Loader] = {"postgresql": _postgresql, "mysql": _mysql, "sqlite": _sqlite}


def sources_for(config: Any, password: str | None, scratch_dir: Path, *, recovery: bool = False) -> list[Source]:
    """One Source per database the policy names, in policy order; an unknown engine raises NotSupportedYet.

    With `recovery`, the config is the recovery server's (for SQLite: path is the recovery folder's file): no
    database there is the policy's own, so none is protected from being restored over.
    """
    loader = LOADERS.get(config.engine)
    if loader is None:
        raise NotSupportedYet(
            f"database engine '{config.engine}' is not supported; known engines: {', '.join(sorted(LOADERS))}",
            "use one of the known engines in the policy's database",
        )
    return loader(config, password, scratch_dir, recovery)
