"""MariaDB/MySQL standby: the verified staging database's tables moved under the standby's name in one statement.

There is no RENAME DATABASE. A swap moves the previous standby's tables aside and staging's into
the standby's database in ONE `RENAME TABLE old.t TO aside.t, ..., staging.t TO old.t, ...`
statement, which the server runs atomically: a query sees either every old table or every new
one, never a mix. Views cannot change database, so they are recreated right after (from a
schema-only dump of staging), with the stored routines.

What a reader sees during a swap: a query already running finishes on the previous copy (the
RENAME waits for it, at most 30 s, else the refresh stops and changes nothing); queries that
arrive meanwhile wait for the RENAME, a few milliseconds, then read the new tables. For a few
milliseconds more, until they are recreated, the views and routines are missing (a query on a
view fails with "doesn't exist"), or a view of the previous copy reads the new tables. A reader
transaction that spans the swap keeps the previous copy until it ends, or gets a deadlock error.

Readers get SELECT and SHOW VIEW on the standby's name (`crm_standby`.*), and nothing else: the
grant is by name, so it holds across every swap, and never reaches staging or the copy moved
aside. Triggers and events are left out of the standby: a read-only copy never fires a trigger,
and an event would change it. MariaDB's read_only is server-wide and is not set: on a server
dedicated to recovery, setting it is the administrator's choice.

The recovery user needs, on the recovery server: CREATE, DROP, ALTER, SELECT, INSERT, INDEX,
CREATE VIEW, SHOW VIEW, CREATE ROUTINE, ALTER ROUTINE, TRIGGER and EVENT (restoring, moving)
and GRANT OPTION (to give readers SELECT, SHOW VIEW); global SELECT lets it see who else may read.
"""

from __future__ import annotations

import logging
import re
import secrets
from typing import TYPE_CHECKING

import pymysql

from opsctl.leftovers import Maker, me
from opsctl.sources.base import StandbyState
from opsctl.sources.errors import DestinationRefused, RestoreFailed
from opsctl.sources.mysql_client import NO_PRIVILEGE, create_database_sql, database_properties, names_of, quote

if TYPE_CHECKING:
    from pymysql.cursors import Cursor

log = logging.getLogger(__name__)
STANDBY_COMMENT = "opsctl-standby: a read-only copy that opsctl standby refresh replaces"
READ_PRIVILEGES = ("SELECT", "SHOW VIEW")
_LOCK_WAIT_S = 30
_NO_SUCH_ACCOUNT = 1133  # "Can't find any matching row in the user table"
_LOCK_TIMEOUT = 1205
_UNKNOWN_COLUMN = 1054  # MySQL proper: no SCHEMA_COMMENT
_TRIGGERS = "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s"
_EVENTS = "SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s"
_VIEWS = "SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = %s"
_ROUTINES = "SELECT ROUTINE_TYPE, ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = %s"
_MOVABLE = ("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
            "AND TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED', 'SEQUENCE')")
_GRANTS = "SELECT GRANTEE, PRIVILEGE_TYPE FROM information_schema.SCHEMA_PRIVILEGES WHERE TABLE_SCHEMA = %s"


def account(reader: str) -> tuple[str, str]:
    """'support' is support@'%'; 'support@10.0.0.%' names its host."""
    user, at, host = reader.rpartition("@")
    return (user, host) if at else (reader, "%")


def grant_name(database: str) -> str:
    """The database as GRANT reads it: `_` and `%` are wildcards there, so they are escaped."""
    return re.sub(r"([_%\\])", r"\\\1", database)


def _account_text(grantee: str) -> str:
    """information_schema's 'support'@'%' as the policy writes it: support@%."""
    user, _, host = grantee.rpartition("@")
    return f"{user.strip(chr(39))}@{host.strip(chr(39))}"


def _grants(cur: Cursor, name: str) -> dict[str, set[str]]:
    """Who holds which database-level privileges on `name` (every account's, when this user has global SELECT)."""
    cur.execute(_GRANTS, (grant_name(name),))
    found: dict[str, set[str]] = {}
    for grantee, privilege in cur.fetchall():
        found.setdefault(_account_text(grantee), set()).add(privilege)
    return found


def grant_readers(cur: Cursor, user: str, name: str, readers: tuple[str, ...]) -> None:
    """SELECT and SHOW VIEW on `name` for each reader, and nothing more for anyone else at that level."""
    try:  # MariaDB: a GRANT must never create a missing account (MySQL 8 never does, and has no such mode)
        cur.execute("SET SESSION sql_mode = CONCAT(@@sql_mode, ',NO_AUTO_CREATE_USER')")
    except pymysql.err.MySQLError:
        log.debug("this server has no NO_AUTO_CREATE_USER mode")
    on = f"{quote(grant_name(name))}.*"
    wanted = {"{}@{}".format(*account(r)) for r in readers}
    for reader in readers:
        try:
            cur.execute(f"GRANT {', '.join(READ_PRIVILEGES)} ON {on} TO %s@%s", account(reader))
        except pymysql.err.MySQLError as exc:
            raise _grant_refused(exc, user, reader) from None
    for holder, privileges in _grants(cur, name).items():
        extra = privileges - set(READ_PRIVILEGES) if holder in wanted else privileges
        if extra:  # a reader with more than reading, or someone no longer a reader
            cur.execute(f"REVOKE {', '.join(sorted(extra))} ON {on} FROM %s@%s", account(holder))


def _grant_refused(exc: Exception, user: str, reader: str) -> Exception:
    code = exc.args[0] if exc.args else None
    if code == _NO_SUCH_ACCOUNT:
        return DestinationRefused(f"the standby's reader {reader} is not an account on the recovery server",
                                  f"create it there: CREATE USER '{account(reader)[0]}'@'{account(reader)[1]}' "
                                  "IDENTIFIED BY ...; then refresh again")
    if code in NO_PRIVILEGE:
        return DestinationRefused(f"user {user} may not give {reader} read access to the standby",
                                  f"grant it: GRANT SELECT, SHOW VIEW ON *.* TO {user} WITH GRANT OPTION")
    return exc


def strip(cur: Cursor, staging: str) -> None:
    """Triggers and events out of the verified copy: never fired on a read-only copy, and a table with a trigger
    cannot change database."""
    for trigger in names_of(cur, _TRIGGERS, staging):
        cur.execute(f"DROP TRIGGER {quote(staging)}.{quote(trigger)}")
    for event in names_of(cur, _EVENTS, staging):
        cur.execute(f"DROP EVENT {quote(staging)}.{quote(event)}")


def check_is_standby(cur: Cursor, name: str, where: str) -> bool:
    """Whether `name` exists; refuses one that holds something and is not a standby opsctl made."""
    try:
        cur.execute("SELECT SCHEMA_COMMENT FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (name,))
    except pymysql.err.OperationalError as exc:
        if exc.args[0] != _UNKNOWN_COLUMN:
            raise
        cur.execute("SELECT '' FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (name,))
        return cur.fetchone() is not None  # MySQL proper keeps no comment: the name is all there is
    row = cur.fetchone()
    if row is None:
        return False
    if row[0] != STANDBY_COMMENT:
        raise DestinationRefused(f"database {name} on {where} exists and is not a standby opsctl made, so it was "
                                 "left untouched", "rename or drop it, or give standby.suffix another value")
    return True


def swap_tables(cur: Cursor, staging: str, name: str, exists: bool) -> str | None:
    """One RENAME TABLE: the previous standby's tables to a marked aside database, staging's to `name`."""
    cur.execute("SET SESSION lock_wait_timeout = %s", (_LOCK_WAIT_S,))
    pairs = [(staging, t, name) for t in names_of(cur, _MOVABLE, staging)]
    aside = None
    if exists:
        aside = f"{name[:40]}_old_{secrets.token_hex(3)}"
        cur.execute(create_database_sql(aside, {}))
        _comment(cur, aside, me().mark())  # what lets the next refresh drop it if this run is killed
        pairs = [(name, t, aside) for t in names_of(cur, _MOVABLE, name)] + pairs
        # The new copy's defaults (the views and routines recreated in it take them).
        alter = create_database_sql(name, database_properties(cur, staging)).replace("CREATE", "ALTER", 1)
        if alter != f"ALTER DATABASE {quote(name)}":
            cur.execute(alter)
    else:
        cur.execute(create_database_sql(name, database_properties(cur, staging)))
        _comment(cur, name, STANDBY_COMMENT)
    if pairs:
        try:
            cur.execute("RENAME TABLE " + ", ".join(f"{quote(a)}.{quote(t)} TO {quote(b)}.{quote(t)}"
                                                    for a, t, b in pairs))
        except pymysql.err.OperationalError as exc:
            if exc.args[0] != _LOCK_TIMEOUT:
                raise
            raise RestoreFailed(f"a session kept the standby {name} busy for {_LOCK_WAIT_S} s, so it was not "
                                "replaced", "run the refresh again; the previous standby is unchanged") from None
    return aside


def drop_views_and_routines(cur: Cursor, name: str) -> None:
    """The previous copy's views and routines, which the new copy's replace."""
    for view in names_of(cur, _VIEWS, name):
        cur.execute(f"DROP VIEW IF EXISTS {quote(name)}.{quote(view)}")
    cur.execute(_ROUTINES, (name,))
    for kind, routine in cur.fetchall():
        cur.execute(f"DROP {kind} IF EXISTS {quote(name)}.{quote(routine)}")


def views_of(cur: Cursor, database: str) -> list[str]:
    return names_of(cur, _VIEWS, database)


def _comment(cur: Cursor, database: str, text: str) -> None:
    try:
        cur.execute(f"ALTER DATABASE {quote(database)} COMMENT = %s", (text,))
    except pymysql.err.ProgrammingError:  # MySQL proper has no database comments
        log.debug("database %s cannot carry a comment", database)


def drop_asides(cur: Cursor, name: str) -> None:
    """Previous standbys a killed refresh moved aside and did not drop: by name and opsctl's mark only."""
    try:
        cur.execute("SELECT SCHEMA_NAME, SCHEMA_COMMENT FROM information_schema.SCHEMATA WHERE SCHEMA_COMMENT LIKE %s",
                    ("%opsctl-scratch%",))
    except pymysql.err.OperationalError:
        return  # MySQL proper: no marks, so nothing is provably ours
    for candidate, mark in cur.fetchall():
        maker = Maker.parse(mark or "")
        if re.fullmatch(re.escape(name[:40]) + r"_old_[0-9a-f]{6}", candidate) and maker is not None \
                and maker != me():
            log.warning("dropping %s, a previous standby an interrupted refresh left behind", candidate)
            cur.execute(f"DROP DATABASE IF EXISTS {quote(candidate)}")


def state(cur: Cursor, name: str) -> StandbyState | None:
    cur.execute("SELECT SUM(DATA_LENGTH + INDEX_LENGTH) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
                "HAVING COUNT(*) > 0 OR EXISTS (SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s)",
                (name, name))
    row = cur.fetchone()
    if row is None:
        return None
    grants = _grants(cur, name)
    read_only = all(privileges <= set(READ_PRIVILEGES) for privileges in grants.values())
    return StandbyState(exists=True, read_only=read_only, readers=tuple(sorted(grants)),
                        size_bytes=int(row[0]) if row[0] is not None else None)
