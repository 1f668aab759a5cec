"""Durations written the way operators write them: 24h, 90m, 7d, 1h30m."""

from __future__ import annotations

import re
from datetime import timedelta
from itertools import pairwise

_PART = re.compile(r"([0-9]+)([wdhms])")
_SECONDS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
# 100 years: longer than any objective or timeout means anything, and short enough that a date
# minus it (RPO, key age) still exists; timedelta itself overflows at a billion days.
LONGEST = timedelta(days=36500)
_LONGEST_TEXT = "36500d (100 years)"
_MAX_DIGITS = 12  # more digits than any duration up to LONGEST needs; int() of thousands of digits is refused
_SHOWN = 40  # a pasted novel is not echoed back whole
_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
_TENTHS_BELOW_S = 10  # durations shorter than this are shown with tenths of a second


def parse_duration(text: object) -> timedelta:
    """Parse '24h', '90m', '7d', '1h30m' into a timedelta; ValueError says what is accepted."""
    if isinstance(text, timedelta):
        return _within_bounds(text, str(text))
    if not isinstance(text, str) or not text.strip():
        raise ValueError("expected a duration such as 24h, 90m or 7d")
    shown = text if len(text) <= _SHOWN else text[:_SHOWN] + "..."
    compact = text.replace(" ", "").lower()
    parts = _PART.findall(compact)
    if not parts or "".join(n + u for n, u in parts) != compact:
        raise ValueError(f"'{shown}' is not a duration; write it like 24h, 90m, 7d or 1h30m")
    if any(len(number.lstrip("0")) > _MAX_DIGITS for number, _ in parts):
        raise ValueError(f"'{shown}' is longer than opsctl accepts: at most {_LONGEST_TEXT}")
    seconds = sum(int(number) * _SECONDS[unit] for number, unit in parts)
    if seconds > LONGEST.total_seconds():
        raise ValueError(f"'{shown}' is longer than opsctl accepts: at most {_LONGEST_TEXT}")
    return _within_bounds(timedelta(seconds=seconds), shown)


def _within_bounds(value: timedelta, shown: str) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("a duration must be longer than zero")
    if value > LONGEST:
        raise ValueError(f"'{shown}' is longer than opsctl accepts: at most {_LONGEST_TEXT}")
    return value


def format_duration(value: timedelta) -> str:
    """The shortest readable form: 1d2h, 45m, 12s."""
    seconds = int(value.total_seconds())
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            out.append(f"{count}{unit}")
    return "".join(out) or "0s"


def human_duration(seconds: float) -> str:
    """'0.4s', '42s', '5m12s', '5h12m', '3d4h': at most two units, the smaller left out when it is zero."""
    if seconds < 0:
        return "-" + human_duration(-seconds)
    if round(seconds, 1) < _TENTHS_BELOW_S:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    for (big, size), (small, step) in pairwise(_UNITS):
        if whole >= size:
            high, low = whole // size, whole % size // step
            return f"{high}{big}{low}{small}" if low else f"{high}{big}"
    return f"{whole}s"
