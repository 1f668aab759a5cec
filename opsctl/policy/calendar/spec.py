"""The data every part of the package shares: a parsed expression (Spec), its fields (Chain, Part), its bounds.

Kept apart so that reading, printing, elapse computing and advice all depend on it and not on each other.
"""

from __future__ import annotations

from dataclasses import dataclass

USEC = 1_000_000
MIN_YEAR, MAX_YEAR = 1970, 2199  # systemd's bounds: no elapse is computed past 2199
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass(frozen=True)
class Part:
    """One element of a comma list: start, start..stop or start[..stop]/repeat (stop -1: none)."""

    start: int
    stop: int = -1
    repeat: int = 0


Chain = tuple[Part, ...] | None  # None is "*" (any value); seconds are kept in microseconds, as systemd does


@dataclass(frozen=True)
class Spec:
    weekdays: int  # bit 0 is Monday; 0 means any day
    year: Chain
    month: Chain
    day: Chain
    hour: Chain
    minute: Chain
    usec: Chain


def chain_values(chain: Chain, low: int, high: int) -> set[int]:
    if chain is None:
        return set(range(low, high + 1))
    values: set[int] = set()
    for part in chain:
        last = part.stop if part.stop >= 0 else (high if part.repeat else part.start)
        values.update(range(part.start, last + 1, part.repeat or 1))
    return values
