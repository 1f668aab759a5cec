"""Awkward schemas for all three engines (the SQL files beside this one) and ways to change one value per column.

Every table of a corpus holds at least two rows that differ in every column, so a column is
changed by copying another row's value into it: the subtlest change that is sure to be a change.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TypeVar

Column = TypeVar("Column", bound=tuple)
HERE = Path(__file__).parent


def text(name: str) -> str:
    return (HERE / name).read_text(encoding="utf-8")


def unseen_changes(columns: Sequence[Column], fingerprint: Callable[[Column], object],
                   change_one_value: Callable[[Column], bool],
                   rolled_back: Callable[[], AbstractContextManager]) -> list[str]:
    """Change one value per column, each undone after; return the columns whose change the fingerprint missed."""
    missed = []
    for column in columns:
        before = fingerprint(column)
        with rolled_back():
            changed = change_one_value(column)
            after = fingerprint(column)
        if not changed or after == before:
            missed.append(".".join(column) + ("" if changed else " (no two rows differ)"))
    return missed
