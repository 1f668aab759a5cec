"""Awkward schemas for all three engines (the SQL files beside this one) and ways to change one value per column.

Every table of a corpus holds at least two rows that differ in every column, so a column is
changed by copying another row's value into it: the subtlest change that is sure to be a change.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent


def text(name: str) -> str:
    return (HERE / name).read_text(encoding="utf-8")
