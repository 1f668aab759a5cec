"""Database failures, each with a hint; messages never carry row data."""

from __future__ import annotations

import sqlite3

from opsctl.errors import BadInput, OpsctlError, described
from opsctl.sources.redact import RAISED_CONTEXT, WITHHELD, redact_message


class DatabaseError(OpsctlError):
    pass


class DatabaseUnreachable(DatabaseError):
    pass


class DatabaseAuthFailed(DatabaseError):
    pass


class DatabaseMissing(DatabaseError):
    pass


class DumpFailed(DatabaseError):
    pass


class RestoreFailed(DatabaseError):
    pass


class ToolMissing(DatabaseError):
    pass


class DestinationRefused(BadInput):
    pass


# MariaDB's SIGNAL (user-defined, unhandled): the text is whatever a trigger or routine wrote.
_SIGNAL_ERRNOS = frozenset({1642, 1643, 1644})
# PL/pgSQL's RAISE and ASSERT: the same, in PostgreSQL; a RAISE may also give any other SQLSTATE,
# which only the context line tells.
_RAISE_SQLSTATES = frozenset({"P0001", "P0004"})


def database_error_text(exc: BaseException) -> str:
    """A driver's exception (psycopg, pymysql, sqlite3) as its code and redacted text; others by class only."""
    if isinstance(exc, OpsctlError):
        return exc.message
    driver = type(exc).__module__.partition(".")[0]
    if driver == "psycopg":
        return _postgres_text(exc)
    if driver == "pymysql":
        return _mysql_text(exc)
    if isinstance(exc, sqlite3.Error):
        return _sqlite_text(exc)
    return described(exc)


def _postgres_text(exc: BaseException) -> str:
    """The primary message only: psycopg's str() adds DETAIL, CONTEXT and the statement, which quote rows."""
    import psycopg  # loaded already: exc comes from it

    if not isinstance(exc, psycopg.Error):
        return described(exc)
    raised = exc.sqlstate in _RAISE_SQLSTATES or RAISED_CONTEXT.search(exc.diag.context or "")
    text = WITHHELD if raised else _redacted(exc.diag.message_primary or str(exc))
    return f"{text} (SQLSTATE {exc.sqlstate})" if exc.sqlstate else text


def _mysql_text(exc: BaseException) -> str:
    """pymysql's args are (errno, message); its str() is their tuple, so it is never used."""
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
    said = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], str) else exc.__class__.__name__
    text = WITHHELD if code in _SIGNAL_ERRNOS else _redacted(said)
    return f"{text} (MySQL error {code})" if code is not None else text


def _sqlite_text(exc: sqlite3.Error) -> str:
    text = _redacted(str(exc))
    name = getattr(exc, "sqlite_errorname", None)
    return f"{text} ({name})" if name else text


def _redacted(text: str) -> str:
    """Redacted first (a value may span lines), then its first line: the rest is hints, or a value's remains."""
    lines = redact_message(text).strip().splitlines()
    return lines[0] if lines else "no message"


class Withheld(Exception):
    """Stands in for an exception whose text may quote data: same traceback, safe text (what --verbose shows)."""


# Their text is about opsctl's code, never about the data it handles: shown as they are.
_CODE_ERRORS = (TypeError, AttributeError, NameError, ImportError, NotImplementedError, RecursionError)


def traceback_safe(exc: BaseException) -> BaseException:
    """exc when its text cannot carry data; otherwise a stand-in with its traceback, class, and redacted text."""
    if isinstance(exc, (OpsctlError, *_CODE_ERRORS)) and exc.__cause__ is None and exc.__context__ is None:
        return exc
    stand_in = Withheld(f"{type(exc).__module__}.{type(exc).__name__}: {database_error_text(exc)}")
    stand_in.__suppress_context__ = True  # a chained exception may be a driver's, DETAIL lines and all
    return stand_in.with_traceback(exc.__traceback__)
