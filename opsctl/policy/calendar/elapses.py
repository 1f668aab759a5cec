"""Elapses: find_next() of systemd, step by step, on a struct tm normalized by the C library's mktime().

So that the daemon fires when a systemd timer would, across daylight saving changes too, and gives up where
systemd's search gives up (Stuck), which stops its timer.
"""

from __future__ import annotations

import time

from opsctl.policy.calendar.spec import MAX_YEAR, USEC, Chain, Spec

_MAX_ITERATIONS = 1000  # systemd's safety valve in find_next(): it gives up rather than loop

# The struct tm is a list, for speed: year (in full), month (0..11), day, hour, minute, second, tm_isdst,
# then the microseconds find_next() carries beside it and the weekday (Monday 0) mktime() fills in.
_YEAR, _MON, _MDAY, _HOUR, _MIN, _SEC, _DST, _US, _WDAY = range(9)
_FLOOR = (0, 0, 1, 0, 0, 0)  # what a field restarts from (the year never does)
_WEEKDAY_STEP = -1
_AGAIN, _ONWARD, _NEVER = "again", "onward", "never"


class _OutOfRange(Exception):
    pass


class Stuck(Exception):
    """find_next() went round _MAX_ITERATIONS times: systemd gives up there, with EDEADLK."""


def _mktime(tm: list[int]) -> int:
    """mktime(): the time_t of tm, read as local time; tm is rewritten in its normalized form, as C does."""
    try:
        seconds = int(time.mktime((tm[0], tm[1] + 1, tm[2], tm[3], tm[4], tm[5], 0, 1, tm[6])))
        local = time.localtime(seconds)
    except (OverflowError, OSError, ValueError) as exc:
        raise _OutOfRange from exc
    tm[0:7] = local[0], local[1] - 1, local[2], local[3], local[4], local[5], local[8]
    tm[_WDAY] = local[6]
    return seconds


def next_usec(spec: Spec, usec: int) -> int | None:
    """calendar_spec_next_usec(): the first elapse at or after usec + 1 µs, or None if there is none."""
    usec += 1
    local = time.localtime(usec // USEC)
    start = [local[0], local[1] - 1, local[2], local[3], local[4], local[5], local[8], usec % USEC, local[6]]
    found = _find_next(spec, start)
    if found is None:
        return None
    try:
        return _mktime(found) * USEC + found[_US]
    except _OutOfRange:
        return None


def _find_next(spec: Spec, start: list[int]) -> list[int] | None:
    c, keep_dst = start[:], False
    steps = ((_MON, spec.month), (_MDAY, spec.day), (_WEEKDAY_STEP, None), (_HOUR, spec.hour), (_MIN, spec.minute),
             (_SEC, spec.usec))
    for _ in range(_MAX_ITERATIONS):
        outcome = _round(spec, steps, c, keep_dst)
        if outcome == _NEVER:
            return None
        if outcome == _AGAIN:
            continue
        if c[:6] + c[_US:_US + 1] >= start[:6] + start[_US:_US + 1]:  # tm_compare(), then the microseconds
            return c
        # It went back before the start: a local time in a daylight saving gap was read with the wrong
        # offset. systemd (252 has the fix too) steps an hour on and lets mktime() choose DST from then on.
        keep_dst = True
        c[_HOUR] += 1
    raise Stuck


def _round(spec: Spec, steps: tuple[tuple[int, Chain], ...], c: list[int], keep_dst: bool) -> str:
    """One pass of find_next()'s loop: _ONWARD when every field matches, else _AGAIN or _NEVER."""
    try:
        _mktime(c)  # normalize what the previous round carried over
    except _OutOfRange:
        return _NEVER
    if not keep_dst:
        c[_DST] = -1
    if _year_step(spec.year, c) == _NEVER:
        return _NEVER
    for index, chain in steps:
        outcome = _weekday_step(spec.weekdays, c) if index == _WEEKDAY_STEP else _step(index, chain, c)
        if outcome == _AGAIN:
            return _AGAIN
    return _ONWARD


def _year_step(chain: Chain, c: list[int]) -> str:
    changed, c[_YEAR] = _match(chain, c[_YEAR])
    if changed > 0:
        _reset_below(_YEAR, c)
    if changed < 0 or _within_bounds(c) <= 0:
        return _NEVER
    return _ONWARD


def _step(index: int, chain: Chain, c: list[int]) -> str:
    """One field of find_next(): move it to its next matching value, or carry into the field above."""
    if index == _SEC:
        changed, value = _match(chain, c[_SEC] * USEC + c[_US])
        c[_SEC], c[_US] = divmod(value, USEC)  # the seconds keep the microseconds they matched with
    else:
        offset = 1 if index == _MON else 0  # the month is matched as 1..12
        changed, value = _match(chain, c[index] + offset)
        c[index] = value - offset
        if changed > 0:
            _reset_below(index, c)
    if changed < 0 or (changed := _within_bounds(c)) < 0:
        c[index - 1] += 1
        c[index] = _FLOOR[index]
        _reset_below(index, c)
        return _AGAIN
    return _ONWARD if changed else _AGAIN


def _weekday_step(weekdays: int, c: list[int]) -> str:
    if not weekdays:
        return _ONWARD
    probe = c[:]
    try:
        _mktime(probe)
    except _OutOfRange:
        probe[_WDAY] = -1  # matches_weekday() says no, and the day is carried as for any other day
    if probe[_WDAY] >= 0 and weekdays & (1 << probe[_WDAY]):
        return _ONWARD
    c[_MDAY] += 1
    c[_HOUR] = 0
    _reset_below(_HOUR, c)
    return _AGAIN


def _reset_below(index: int, c: list[int]) -> None:
    c[index + 1:_SEC + 1] = _FLOOR[index + 1:]
    c[_US] = 0


def _match(chain: Chain, value: int) -> tuple[int, int]:
    """find_matching_component(): (-1, value) if nothing matches from value on, else (moved?, earliest match)."""
    if chain is None:
        return 0, value
    best = None
    for part in chain:
        if part.start >= value:
            candidate = part.start
        elif part.repeat > 0:
            candidate = part.start + part.repeat * -((part.start - value) // part.repeat)
            if part.stop >= 0 and candidate > part.stop:
                continue
        else:
            continue
        best = candidate if best is None else min(best, candidate)
    if best is None:
        return -1, value
    return int(best != value), best


def _within_bounds(c: list[int]) -> int:
    """tm_within_bounds(): 1 if c is a real local time, 0 if normalizing moved it on (c takes that), -1 if not."""
    if c[_YEAR] > MAX_YEAR:
        return -1
    t = c[:]
    try:
        _mktime(t)
    except _OutOfRange:
        return -1
    if t[:6] == c[:6]:
        return 1
    index = next(index for index in range(6) if t[index] != c[index])
    if t[index] < c[index]:
        return -1  # systemd refuses to go backwards
    if index < _SEC:  # the unit below restarts; systemd resets exactly that one, not the ones under it
        t[index + 1] = _FLOOR[index + 1]
    t[_US] = c[_US]
    c[:] = t
    return 0
