"""PostgreSQL standby: a verified staging database made read-only for its readers, then renamed into place.

What a reader sees during a swap: a session on the previous standby is ended by the server
("terminating connection due to administrator command"); a new connection made while the swap
runs (well under a second, at most a few seconds while ended sessions exit) is refused with
"database ... is not currently accepting connections"; a connection made after it opens the new
copy. The two renames (old standby aside, staging to the standby's name) commit in one
transaction, so no connection ever finds the name missing, and no reader ever sees a mix of
both copies: each session reads one database.

The recovery user needs CREATEDB (it creates, renames and drops its own databases) and, to end
the readers' sessions on the previous standby, pg_signal_backend (or membership in the readers'
roles). It never needs superuser.

Readers get CONNECT on the database, USAGE on its schemas and SELECT on its tables, views and
sequences, nothing else; the database also defaults every transaction to read-only, so even the
recovery user's own sessions cannot write by mistake.
"""

from __future__ import annotations

import logging
import re
import secrets

import psycopg
from psycopg import sql

from opsctl.leftovers import Maker, me
from opsctl.sources.base import StandbyState
from opsctl.sources.errors import DestinationRefused, RestoreFailed
from opsctl.sources.pg_client import PgServer, first_row

log = logging.getLogger(__name__)
STANDBY_COMMENT = "opsctl-standby: a read-only copy that opsctl standby refresh replaces"
DROP_FORCE_SINCE = 130000  # server_version_num of PostgreSQL 13, the first with DROP DATABASE ... WITH (FORCE)
_SCHEMAS = """
SELECT nspname FROM pg_namespace
WHERE nspname NOT IN ('pg_catalog', 'information_schema')
  AND nspname NOT LIKE 'pg\\_toast%' AND nspname NOT LIKE 'pg\\_temp%' ORDER BY 1
"""
_FOUND = """
SELECT pg_get_userbyid(d.datdba) = current_user, shobj_description(d.oid, 'pg_database'),
       EXISTS (SELECT 1 FROM pg_db_role_setting s, unnest(s.setconfig) c
               WHERE s.setdatabase = d.oid AND s.setrole = 0
                 AND c IN ('default_transaction_read_only=on', 'default_transaction_read_only=true')),
       ARRAY(SELECT DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END
             FROM aclexplode(COALESCE(d.datacl, acldefault('d', d.datdba))) a
             WHERE a.privilege_type = 'CONNECT' AND a.grantee <> d.datdba ORDER BY 1)
FROM pg_database d WHERE d.datname = %s
"""
_OWN_MARKED = """
SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database
WHERE pg_get_userbyid(datdba) = current_user AND shobj_description(oid, 'pg_database') LIKE '%opsctl-scratch%'
"""
_OTHER_SESSIONS = "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"


def aside_name(name: str) -> str:
    return f"{name[:40]}_old_{secrets.token_hex(3)}"


def _is_aside_of(candidate: str, name: str) -> bool:
    return re.fullmatch(re.escape(name[:40]) + r"_old_[0-9a-f]{6}", candidate) is not None


def grant_readers(server: PgServer, conn: psycopg.Connection, staging: str, readers: tuple[str, ...]) -> None:
    """Only `readers` may connect to staging, and only to read; every transaction there defaults to read-only."""
    missing = [r for r in readers if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (r,)).fetchone() is None]
    if missing:
        raise DestinationRefused(
            f"the standby's reader role {missing[0]} does not exist on {server.display}"
            + (f" (nor {', '.join(missing[1:])})" if missing[1:] else ""),
            f"create it: CREATE ROLE {missing[0]} LOGIN PASSWORD ... on the recovery server, then refresh again")
    database = sql.Identifier(staging)
    roles = sql.SQL(", ").join(sql.Identifier(r) for r in readers)
    conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(database))
    if readers:
        conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(database, roles))
    with server.connect(staging, autocommit=True) as inside:
        names = [row[0] for row in inside.execute(_SCHEMAS).fetchall()]
        schemas = sql.SQL(", ").join(sql.Identifier(n) for n in names)
        if names:
            inside.execute(sql.SQL("REVOKE CREATE ON SCHEMA {} FROM PUBLIC").format(schemas))
        if names and readers:
            inside.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(schemas, roles))
            inside.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(schemas, roles))
            inside.execute(sql.SQL("GRANT SELECT ON ALL SEQUENCES IN SCHEMA {} TO {}").format(schemas, roles))
    # Last: from here on, every new session there (this user's too) starts read-only.
    conn.execute(sql.SQL("ALTER DATABASE {} SET default_transaction_read_only = on").format(database))


def swap(server: PgServer, conn: psycopg.Connection, staging: str, name: str) -> str | None:
    """Rename staging to `name` in one transaction with the previous standby's move aside; drop that one after."""
    drop_asides(conn, name)
    found = conn.execute(_FOUND, (name,)).fetchone()
    if found is None:
        with conn.transaction():
            _publish(conn, staging, name)
        return None
    owned, comment, _, _ = found
    if not owned or comment != STANDBY_COMMENT:
        raise DestinationRefused(f"database {name} on {server.display} exists and is not a standby opsctl made, so "
                                 "it was left untouched", "rename or drop it, or give standby.suffix another value")
    aside = aside_name(name)
    _allow_connections(conn, name, allow=False)
    try:
        _end_sessions(server, conn, name)
        with conn.transaction():
            _rename(conn, name, aside)
            # What lets the next refresh drop it if this run is killed before the drop below.
            _comment(conn, aside, me().mark())
            _publish(conn, staging, name)
    except BaseException:
        _allow_connections(conn, name, allow=True)  # the transaction rolled back: name is the previous standby
        raise
    _drop(conn, aside)
    return aside


def _publish(conn: psycopg.Connection, staging: str, name: str) -> None:
    """Staging's scratch mark goes with the rename: no sweep of killed runs' leftovers ever drops a standby."""
    _rename(conn, staging, name)
    _comment(conn, name, STANDBY_COMMENT)


def _comment(conn: psycopg.Connection, name: str, text: str) -> None:
    conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(sql.Identifier(name), sql.Literal(text)))


def drop_asides(conn: psycopg.Connection, name: str) -> None:
    """Previous standbys a killed refresh renamed aside and did not drop: this role's, by name and mark only."""
    for candidate, mark in conn.execute(_OWN_MARKED).fetchall():
        maker = Maker.parse(mark or "")
        if _is_aside_of(candidate, name) and maker is not None and maker != me():
            log.warning("dropping %s, a previous standby an interrupted refresh left behind", candidate)
            _drop(conn, candidate)


def _drop(conn: psycopg.Connection, name: str) -> None:
    force = sql.SQL(" WITH (FORCE)" if conn.info.server_version >= DROP_FORCE_SINCE else "")
    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}{}").format(sql.Identifier(name), force))


def _allow_connections(conn: psycopg.Connection, name: str, *, allow: bool) -> None:
    conn.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS {}").format(
        sql.Identifier(name), sql.SQL("true" if allow else "false")))


def _end_sessions(server: PgServer, conn: psycopg.Connection, name: str) -> None:
    """A database with sessions cannot be renamed: end the readers' sessions on the previous standby."""
    for (pid,) in conn.execute(_OTHER_SESSIONS, (name,)).fetchall():
        try:
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        except psycopg.errors.InsufficientPrivilege:
            raise DestinationRefused(
                f"user {server.user} may not end the sessions reading the standby {name}, so it was not replaced",
                f"grant it: GRANT pg_signal_backend TO {server.user}; on the recovery server") from None


def _rename(conn: psycopg.Connection, old: str, new: str) -> None:
    try:
        conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(old), sql.Identifier(new)))
    except psycopg.errors.ObjectInUse:
        raise RestoreFailed(f"database {old} still had sessions after they were asked to end, so the standby was "
                            "not replaced", "run the refresh again; the previous standby is unchanged") from None


def state(conn: psycopg.Connection, name: str) -> StandbyState | None:
    found = conn.execute(_FOUND, (name,)).fetchone()
    if found is None:
        return None
    _, _, read_only, readers = found
    size: int | None = None
    try:
        size = first_row(conn.execute("SELECT pg_database_size(%s)", (name,)))[0]
    except psycopg.errors.InsufficientPrivilege:
        log.debug("user may not read the size of %s", name)
    return StandbyState(exists=True, read_only=bool(read_only), readers=tuple(readers), size_bytes=size)
