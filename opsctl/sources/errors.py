"""Database failures, each with a hint; messages never carry row data."""

from __future__ import annotations

from opsctl.errors import BadInput, OpsctlError


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
