"""Which database server a command restores to: the policy's own, or its recovery server."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pydantic import ValidationError

from opsctl.actions.context import Session
from opsctl.errors import BadInput
from opsctl.policy.model import Database, SQLiteConfig, recovery_config
from opsctl.secrets import as_text, read_secret
from opsctl.sources import Source, sources_for

Which = Literal["source", "recovery"]
SERVERS: tuple[Which, ...] = ("source", "recovery")


@dataclass(frozen=True)
class ServerChoice:
    """A command line's --server, --host, --port and --user; None leaves each to the command's default."""

    which: Which | None = None
    host: str | None = None
    port: int | None = None
    user: str | None = None

    @classmethod
    def of(cls, which: str | None, host: str | None = None, port: int | None = None,
           user: str | None = None) -> ServerChoice:
        """From command-line words (click has checked `which` is one of SERVERS)."""
        return cls(next((known for known in SERVERS if known == which), None), host, port, user)

    @property
    def overrides(self) -> bool:
        return (self.host, self.port, self.user) != (None, None, None)


def resolved(session: Session, choice: ServerChoice, *, prefers_recovery: bool) -> Which:
    """The server asked for; else the recovery server where the command prefers it and the policy has one."""
    if choice.which is not None:
        return choice.which
    return "recovery" if prefers_recovery and session.policy.recovery_server is not None else "source"


def sources_on(session: Session, choice: ServerChoice, *, prefers_recovery: bool = False) -> list[Source]:
    """One Source per database of the policy, on the chosen server (built once per session and choice)."""
    which = resolved(session, choice, prefers_recovery=prefers_recovery)
    key = (which, choice.host, choice.port, choice.user)
    cache = session.server_sources
    if key not in cache:
        cache[key] = session.sources if which == "source" and not choice.overrides else _build(session, which, choice)
    return cache[key]


def source_on(session: Session, choice: ServerChoice, database: str | None, *,
              prefers_recovery: bool = False) -> Source:
    """The source of one database (the only one when database is None) on the chosen server."""
    found = sources_on(session, choice, prefers_recovery=prefers_recovery)
    return session.pick_source(found, database)


def _build(session: Session, which: Which, choice: ServerChoice) -> list[Source]:
    policy = session.policy
    if isinstance(policy.database, SQLiteConfig) and choice.overrides:
        raise BadInput("--host, --port and --user are for database servers; this policy backs up a SQLite file",
                       "leave them out (restore --to FILE picks where the file goes)")
    recovery = policy.recovery_server
    if which == "recovery":
        if recovery is None:
            raise BadInput("the policy sets no recovery_server, so there is no recovery server to restore to",
                           "add recovery_server: to the policy (see policies/reference.yaml), or leave out "
                           "--server recovery to restore to the policy's own server")
        config = _checked(lambda: recovery_config(policy.database, recovery, host=choice.host, port=choice.port,
                                                  user=choice.user))
        secret = recovery.password
    else:
        database = policy.database
        config = _checked(lambda: type(database).model_validate(
            {**database.model_dump(), **{key: value for key, value in
                                         (("host", choice.host), ("port", choice.port), ("user", choice.user))
                                         if value is not None}}))
        secret = getattr(database, "password", None)
    what = "recovery server password" if which == "recovery" else "database password"
    password = as_text(read_secret(secret, what)) if secret is not None else None
    return sources_for(config, password, session.state_dir / "tmp", recovery=which == "recovery")


def _checked(build: Callable[[], Database]) -> Database:
    try:
        config: Database = build()
    except (ValueError, ValidationError) as exc:
        text = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors()) \
            if isinstance(exc, ValidationError) else str(exc)
        raise BadInput(f"--host/--port/--user: {text}", "check the values given on the command line") from None
    return config
