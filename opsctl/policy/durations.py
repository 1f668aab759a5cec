"""Durations written the way operators write them: 24h, 90m, 7d, 1h30m."""

from __future__ import annotations

import re
from datetime import timedelta

_PART = re.compile(r"(\d+)([wdhms])")
_UNITS = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes", "s": "seconds"}


def parse_duration(text: object) -> timedelta:
    """Parse '24h', '90m', '7d', '1h30m' into a timedelta; ValueError says what is accepted."""
    if isinstance(text, timedelta):
        return text
    if not isinstance(text, str) or not text.strip():
        raise ValueError("expected a duration such as 24h, 90m or 7d")
    compact = text.replace(" ", "").lower()
    parts = _PART.findall(compact)
    if not parts or "".join(n + u for n, u in parts) != compact:
        raise ValueError(f"'{text}' is not a duration; write it like 24h, 90m, 7d or 1h30m")
    total = timedelta(**{_UNITS[u]: 0 for u in _UNITS})
    for number, unit in parts:
        total += timedelta(**{_UNITS[unit]: int(number)})
    if total <= timedelta(0):
        raise ValueError("a duration must be longer than zero")
    return total


def format_duration(value: timedelta) -> str:
    """The shortest readable form: 1d2h, 45m, 12s."""
    seconds = int(value.total_seconds())
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            out.append(f"{count}{unit}")
    return "".join(out) or "0s"
