"""Database engines: one module each. Only this package starts database tools."""

from __future__ import annotations

from pathlib import Path

from opsctl.errors import NotSupportedYet
from opsctl.policy.model import MySQLDatabase, PostgresDatabase, SQLiteDatabase
from opsctl.sources.base import Destination, Dump, Source

__all__ = ["Destination", "Dump", "Source", "sources_for"]


def sources_for(config, password: str | None, scratch_dir: Path) -> list[Source]:
    """One Source per database the policy names, in policy order."""
    if isinstance(config, PostgresDatabase):
        # Imported here: psycopg takes ~0.2 s to load, which SQLite policies need not pay.
        from opsctl.sources.pg_client import PgServer
        from opsctl.sources.postgresql import PostgresSource

        server = PgServer(host=config.host, port=config.port, user=config.user, password=password)
        wait = int(config.lock_wait_timeout.total_seconds())
        return [PostgresSource(server, name, wait, protected=config.names) for name in config.names]
    if isinstance(config, SQLiteDatabase):
        from opsctl.sources.sqlite import SQLiteSource

        return [SQLiteSource(config.path, config.names[0], scratch_dir)]
    if isinstance(config, MySQLDatabase):
        from opsctl.sources.mysql import MySQLSource
        from opsctl.sources.mysql_client import MySQLServer

        server = MySQLServer(host=config.host, port=config.port, user=config.user, password=password)
        wait = int(config.lock_wait_timeout.total_seconds())
        return [MySQLSource(server, name, wait, config.lock_non_transactional, protected=config.names)
                for name in config.names]
    raise NotSupportedYet(f"database engine {config.engine} is not supported")
