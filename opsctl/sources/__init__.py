"""Database engines: one module each. Only this package starts database tools."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from opsctl.errors import NotSupportedYet
from opsctl.sources.base import Destination, Dump, Source

__all__ = ["Destination", "Dump", "Source", "sources_for"]

# Each loader imports its engine's modules only when called: psycopg takes ~0.2 s to load,
# which SQLite policies need not pay. The config is the policy's PostgresConfig, MySQLConfig or SQLiteConfig.
Loader = Callable[[Any, str | None, Path], list[Source]]


def _postgresql(config: Any, password: str | None, _scratch_dir: Path) -> list[Source]:
    from opsctl.sources.pg_client import PgServer
    from opsctl.sources.postgresql import PostgresSource

    server = PgServer(host=config.host, port=config.port, user=config.user, password=password)
    wait = int(config.lock_wait_timeout.total_seconds())
    return [PostgresSource(server, name, wait, protected=config.names) for name in config.names]


def _sqlite(config: Any, _password: str | None, scratch_dir: Path) -> list[Source]:
    from opsctl.sources.sqlite import SQLiteSource

    return [SQLiteSource(config.path, config.names[0], scratch_dir)]


def _mysql(config: Any, password: str | None, _scratch_dir: Path) -> list[Source]:
    from opsctl.sources.mysql import MySQLSource
    from opsctl.sources.mysql_client import MySQLServer

    server = MySQLServer(host=config.host, port=config.port, user=config.user, password=password)
    wait = int(config.lock_wait_timeout.total_seconds())
    return [MySQLSource(server, name, wait, config.lock_non_transactional, protected=config.names)
            for name in config.names]


LOADERS: dict[str, Loader] = {"postgresql": _postgresql, "mysql": _mysql, "sqlite": _sqlite}


def sources_for(config: Any, password: str | None, scratch_dir: Path) -> list[Source]:
    """One Source per database the policy names, in policy order; an unknown engine raises NotSupportedYet."""
    loader = LOADERS.get(config.engine)
    if loader is None:
        raise NotSupportedYet(
            f"database engine '{config.engine}' is not supported; known engines: {', '.join(sorted(LOADERS))}",
            "use one of the known engines in the policy's database",
        )
    return loader(config, password, scratch_dir)
