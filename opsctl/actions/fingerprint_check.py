"""Comparing a restored database's census with the one taken at backup time. Names objects, never values."""

from __future__ import annotations

from dataclasses import dataclass

from opsctl.manifest import Census, CensusValue


@dataclass(frozen=True)
class TableCheck:
    """One table: rows expected and found, whether the fingerprints agree, how long the check took."""

    name: str
    rows_expected: int | None
    rows_actual: int | None
    fingerprint_match: bool | None
    seconds: float | None
    comparable: bool = True
    """False: the backup's fingerprint was taken in a way a restore cannot reproduce; row counts decide."""
    rounded: int = 0
    """Rows the backup warned the dump tool writes rounded (MariaDB FLOAT): the likely reason for a mismatch."""
    present: bool = True
    """Whether the restored database has the table at all."""
    in_backup: bool = True
    """Whether the backup listed the table."""

    @property
    def ok(self) -> bool:
        return self.rows_expected == self.rows_actual and self.fingerprint_match is not False

    @property
    def problem(self) -> str | None:
        """Why the table fails, in words that name it and never its contents."""
        if not self.present:
            return f"table {self.name}: missing from the restored database"
        if not self.in_backup:
            return f"table {self.name}: not in the backup"
        if self.rows_expected != self.rows_actual:
            return f"table {self.name}: expected {self.rows_expected} rows, found {self.rows_actual}"
        if self.fingerprint_match is False and self.rounded:
            return (f"table {self.name}: same row count, different content (fingerprint mismatch); the backup warned "
                    f"that {self.rounded} of its rows hold FLOAT values the dump rounds, which no restore brings "
                    "back exactly: store them as DOUBLE or DECIMAL")
        if self.fingerprint_match is False:
            return f"table {self.name}: same row count, different content (fingerprint mismatch)"
        return None

    @property
    def note(self) -> str | None:
        """What was not proven about a table that passed, in words that name it."""
        if not self.ok:
            return None
        if self.rows_expected is None and self.present:
            return (f"table {self.name}: only its presence was checked: the backup could not count it at the dump's "
                    "moment (a non-transactional table dumped without a lock, or a virtual table)")
        if self.comparable:
            return None
        return (f"table {self.name}: row count checked, content not compared: this restore cannot recompute the "
                "backup's fingerprint the way it was taken (opsctl before 0.2 hashed internal ids, column order or "
                "row timestamps that a restore changes; or the backup's server hashed in a way this one cannot)")


@dataclass(frozen=True)
class Comparison:
    tables: tuple[TableCheck, ...]
    problems: tuple[str, ...]
    """Every mismatch: tables first, then schema objects and values."""

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def notes(self) -> tuple[str, ...]:
        """What passed with less than full proof (e.g. tables compared by row count only)."""
        return tuple(t.note for t in self.tables if t.note)

    @property
    def proven(self) -> int:
        """Tables whose content was compared value by value and matched."""
        return sum(t.fingerprint_match is True for t in self.tables)


def compare(expected: Census, actual: Census) -> Comparison:
    """Per table, per schema object and per recorded value: what differs between backup and restore."""
    tables = _tables(expected, actual)
    problems = [t.problem for t in tables if t.problem]
    problems += _schema(expected.schema, actual.schema) + _values(expected.values, actual.values)
    return Comparison(tables=tables, problems=tuple(problems))


def _tables(expected: Census, actual: Census) -> tuple[TableCheck, ...]:
    found = {t.name: t for t in actual.tables}
    checks = []
    for want in expected.tables:
        got = found.pop(want.name, None)
        counted = want.rows is not None  # a table dumped without a lock was not counted: nothing to prove
        comparable = got is None or not want.fingerprint or got.method == want.method
        match = None if got is None or not (counted and want.fingerprint and comparable) \
            else want.fingerprint == got.fingerprint
        checks.append(TableCheck(want.name, want.rows if counted else None,
                                 None if got is None else (got.rows if counted else None), match,
                                 None if got is None else got.seconds, comparable, want.rounded, got is not None))
    checks += [TableCheck(got.name, None, got.rows, None, got.seconds, in_backup=False) for got in found.values()]
    return tuple(checks)


def _schema(expected: dict[str, list[str]], actual: dict[str, list[str]]) -> list[str]:
    problems: list[str] = []
    for kind in sorted(expected.keys() | actual.keys()):
        want, got = set(expected.get(kind, ())), set(actual.get(kind, ()))
        problems += [f"{kind} {name}: missing from the restored database" for name in sorted(want - got)]
        problems += [f"{kind} {name}: not in the backup" for name in sorted(got - want)]
    return problems


def _values(expected: dict[str, CensusValue], actual: dict[str, CensusValue]) -> list[str]:
    """Counters (ints, e.g. sequences) must be at least what was recorded; anything else must be equal."""
    problems = []
    for label, want in sorted(expected.items()):
        got = actual.get(label)
        if isinstance(want, int):
            if not isinstance(got, int) or got < want:  # None: reset to never used, or missing
                problems.append(f"{label}: behind the backup (reset or lost)")
        elif want is not None and got != want:
            problems.append(f"{label}: does not match the backup")
    return problems
