"""Where a copy goes when the database server itself is gone: the recovery server, and the standby on it."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

from opsctl.policy.fields import PolicyPath, Secret, Strict
from opsctl.policy.tls import DatabaseTls

# A PostgreSQL role, a MariaDB account (user or user@host) or, for SQLite, a Unix group: never quoted into SQL by
# hand, but kept to plain names so a typo fails at load time instead of on the server at 3 a.m.
ReaderName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]{0,62}(@[A-Za-z0-9_.%-]{1,60})?$")]


class RecoveryServer(Strict):
    """A second server (SQLite: a folder) where verify, drill and standby restore, and restore --server recovery."""

    host: str | None = Field(None, description="server host name, address, or a Unix socket folder")
    port: int | None = Field(None, ge=1, le=65535, description="server TCP port; default: database.port")
    user: str | None = Field(None, min_length=1, description="the role that restores there (needs CREATEDB)")
    password: Secret | None = Field(None, description="where this server's password comes from (its own secret)")
    tls: DatabaseTls = Field(DatabaseTls(), description="encryption in transit to it: mode and ca_file, as "
                                                        "database.tls (its own: nothing is taken from database.tls)")
    folder: PolicyPath | None = Field(None, description="SQLite only: the folder restores land in")


class Standby(Strict):
    """The read-only copy customer service reads while production is rebuilt (opsctl standby refresh)."""

    readers: tuple[ReaderName, ...] = Field(
        (), description="who may read the standby, SELECT only: PostgreSQL roles, MariaDB accounts (user or "
                        "user@host), or for SQLite one Unix group; they must exist already")
    suffix: Annotated[str, StringConstraints(pattern=r"^_[a-z0-9_]{1,20}$")] = Field(
        "_standby", description="the standby of database crm is crm_standby (SQLite: crm_standby.sqlite3 in "
                                "recovery_server.folder)")
