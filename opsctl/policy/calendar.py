"""Schedules written as systemd writes them (OnCalendar=, systemd.time(7)), for a documented subset.

Accepted: the shorthands minutely, hourly, daily, weekly, monthly, yearly, annually, quarterly and
semiannually (any case), or `[WEEKDAYS] [[YYYY-]MM-DD] [HH:MM[:SS]]`, where WEEKDAYS is a comma list
of names and `..` ranges (Mon..Fri, Sat,Sun), and every date or time field is `*` or a comma list of
values, `A..B` ranges and `/N` repetitions. A missing date means every day, a missing time 00:00:00.
Refused with a message saying what to write instead: time zones (UTC), the `~` last-day syntax,
fractional seconds, `@` timestamps, cron lines, "daily 01:30", "every 5m".

Elapses are computed with systemd's own algorithm (find_next() of src/shared/calendarspec.c, v252),
on the C library's mktime()/localtime() in the machine's local time zone, so that the daemon fires at
the moments a systemd timer would, including across daylight saving changes: a local time that does
not exist that day is skipped, one that happens twice elapses once (the first time).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from opsctl.policy.durations import LONGEST
from opsctl.process import tool_environment


class CalendarError(ValueError):
    """The text is not a calendar expression opsctl understands; the message says what to write instead."""


_USEC = 1_000_000
_MIN_YEAR, _MAX_YEAR = 1970, 2199  # systemd's bounds: no elapse is computed past 2199
_MAX_ITERATIONS = 1000  # systemd's safety valve in find_next(): it gives up rather than loop
_MAX_LIST = 241  # systemd refuses longer comma lists (CALENDARSPEC_COMPONENTS_MAX + 1)
_MAX_DIGITS = 9  # every accepted value has at most 4 digits; int() of a pasted novel is never attempted
_SHOWN = 60
_LONGEST_TEXT = 1000  # far more than any sensible expression; a pasted file is refused outright
_CENTURY = 100  # systemd reads years below it as 19xx or 20xx
_CRON_FIELDS = 5
_EXAMPLES = '"*-*-* 03:30:00" (every day at 03:30), "Mon..Fri *-*-* 02:00" or "hourly"'
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_ALL_WEEKDAYS = 0b1111111
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_USEC = timedelta(microseconds=1)
# longest_gap looks from a fixed moment, so a policy validates the same way every day.
_GAP_REFERENCE = datetime(2025, 1, 1, tzinfo=UTC)
_GAP_WINDOW = timedelta(days=400)
_GAP_ELAPSES = 5000


@dataclass(frozen=True)
class _Part:
    """One element of a comma list: start, start..stop or start[..stop]/repeat (stop -1: none)."""

    start: int
    stop: int = -1
    repeat: int = 0


_Chain = tuple[_Part, ...] | None  # None is "*" (any value); seconds are kept in microseconds, as systemd does
_ZERO: _Chain = (_Part(0),)


@dataclass(frozen=True)
class _Spec:
    weekdays: int  # bit 0 is Monday; 0 means any day
    year: _Chain
    month: _Chain
    day: _Chain
    hour: _Chain
    minute: _Chain
    usec: _Chain


def _shorthand(month: _Chain = None, day: _Chain = None, hour: _Chain = _ZERO, minute: _Chain = _ZERO,
               weekdays: int = 0) -> _Spec:
    return _Spec(weekdays, None, month, day, hour, minute, _ZERO)


_FIRST = (_Part(1),)
_SHORTHANDS = {
    "minutely": _shorthand(hour=None, minute=None),
    "hourly": _shorthand(hour=None),
    "daily": _shorthand(),
    "weekly": _shorthand(weekdays=1),
    "monthly": _shorthand(day=_FIRST),
    "yearly": _shorthand(month=_FIRST, day=_FIRST),
    "annually": _shorthand(month=_FIRST, day=_FIRST),
    "quarterly": _shorthand(month=tuple(_Part(m) for m in (1, 4, 7, 10)), day=_FIRST),
    "semiannually": _shorthand(month=(_Part(1), _Part(7)), day=_FIRST),
}
# Spellings systemd also takes; refused here so that the README's list is the whole story.
_ALIASES = {"anually": "annually", "biannually": "semiannually", "bi-annually": "semiannually",
            "semi-annually": "semiannually"}


@dataclass(frozen=True)
class Calendar:
    """A parsed calendar expression: the text as written and systemd's normalized form of it."""

    text: str
    normalized: str
    _spec: _Spec = field(repr=False, compare=False)

    def next_after(self, moment: datetime) -> datetime:
        """The first elapse strictly after moment (aware), as an aware local time.

        CalendarError if there is none: its years are over, or systemd's own search loops there (its timer
        would stop), as it does for "3/12:00" the afternoon before Europe/Berlin moves its clocks forward.
        """
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ValueError("next_after needs a timezone-aware moment")
        usec = (moment - _EPOCH) // _ONE_USEC
        if usec < 0:
            raise ValueError("next_after cannot look before 1970, as systemd cannot")
        try:
            found = _next_usec(self._spec, usec)
        except _Stuck:
            raise CalendarError(_gives_up(self, usec, moment)) from None
        if found is None:
            raise CalendarError(f'"{_shown(self.text)}" has no elapse after {moment.isoformat()} (systemd looks '
                                f"no further than {_MAX_YEAR}); write {_EXAMPLES}")
        return (_EPOCH + timedelta(microseconds=found)).astimezone()

    def longest_gap(self) -> timedelta:
        """The longest time between two consecutive elapses in about 400 days (at most 5000 elapses).

        Looked at from the first elapse after 2025-01-01. A schedule that stops elapsing (its years end, or
        systemd's search for its next elapse loops, which stops its timer) has a gap that never ends: LONGEST,
        100 years, which callers can still add a delay to.
        """
        try:
            previous = self.next_after(_GAP_REFERENCE)
        except CalendarError:
            return LONGEST
        horizon, longest = previous + _GAP_WINDOW, timedelta(0)
        for _ in range(_GAP_ELAPSES):
            try:
                following = self.next_after(previous)
            except CalendarError:
                return LONGEST
            longest = max(longest, following - previous)
            if following >= horizon:
                break
            previous = following
        return min(longest, LONGEST)


def parse_calendar(text: str) -> Calendar:
    """Parse a calendar expression of the accepted subset; CalendarError says what to write instead."""
    if not isinstance(text, str):
        raise CalendarError(f"a schedule is a calendar expression written as text; write {_EXAMPLES}")
    if not text.strip():
        raise CalendarError(f"the schedule is empty; write {_EXAMPLES}")
    if len(text) > _LONGEST_TEXT:
        raise CalendarError(_refusal(text, f"it is longer than the {_LONGEST_TEXT} characters any schedule needs"))
    try:
        spec = _parsed(text)
    except _Bad as bad:
        raise CalendarError(_diagnose(text) or _refusal(text, bad.reason, bad.example)) from None
    return Calendar(text, _format(spec), spec)


def _parsed(text: str) -> _Spec:
    """The spec of text, or _Bad with the reason the grammar stopped."""
    spec = _SHORTHANDS.get(text.lower()) if text.isascii() else None
    return spec or _validated(_Reader(text).spec())


def systemd_disagrees(calendar: Calendar) -> str | None:
    """Ask `systemd-analyze calendar` (when on PATH): a one-line reason if it refuses or normalizes otherwise."""
    binary = shutil.which("systemd-analyze")
    if binary is None:
        return None
    try:
        result = subprocess.run([binary, "calendar", "--", calendar.text], capture_output=True, text=True,
                                timeout=10, check=False, env=tool_environment())
    except (OSError, subprocess.TimeoutExpired):  # it could not be asked: that is not a disagreement
        return None
    if result.returncode != 0:
        said = next((line.strip() for line in result.stderr.splitlines() if line.strip()), f"exit {result.returncode}")
        verb = "refuses" if "Failed to parse" in result.stderr else "fails on"  # or it cannot compute an elapse
        return f'systemd {verb} "{_shown(calendar.text)}": {_shown(said, 200)}'
    found = re.search(r"^\s*Normalized form: (.*)$", result.stdout, re.MULTILINE)
    theirs = found.group(1).strip() if found else "(nothing)"
    if theirs != calendar.normalized:
        return f'systemd normalizes "{_shown(calendar.text)}" to "{theirs}", opsctl to "{calendar.normalized}"'
    return None


# ---------------------------------------------------------------------------------------------------------
# Parsing: the same grammar and the same quirks as calendar_spec_from_string(), minus the refused forms.


class _Bad(Exception):
    def __init__(self, reason: str, example: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.example = example


# ASCII: with Unicode case folding the long s (U+017F) would match "s", and systemd compares bytes.
_WEEKDAY = re.compile("monday|mon|tuesday|tue|wednesday|wed|thursday|thu|friday|fri|saturday|sat|sunday|sun",
                      re.IGNORECASE | re.ASCII)
_NUMBER = re.compile("[0-9]+")  # not \d: systemd takes ASCII digits only
_WORD = re.compile(r"[^\s,.:\-/]*")


class _Reader:
    """A cursor over the text, with one method per part of the grammar."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def peek(self, count: int = 1) -> str:
        return self.text[self.pos:self.pos + count]

    def spaces(self) -> None:
        while self.peek() == " ":
            self.pos += 1

    def word(self) -> str:
        found = _WORD.match(self.text, self.pos)
        return found.group(0) if found else ""

    def spec(self) -> _Spec:
        weekdays = self.weekdays()
        year, month, day = self.date()
        hour, minute, usec = self.time_of_day()
        if self.pos != len(self.text):
            raise _Bad(f'"{_shown(self.text[self.pos:])}" is left over after the time')
        return _Spec(weekdays, year, month, day, hour, minute, usec)

    def weekdays(self) -> int:
        bits, low, first = 0, -1, True
        while True:
            found = _WEEKDAY.match(self.text, self.pos)
            if found is None:
                if first:
                    return 0
                raise _Bad(f'"{_shown(self.word())}" is not a weekday (Mon..Sun, or Monday..Sunday)')
            day = _WEEKDAY_NUMBERS[found.group(0).lower()[:3]]
            self.pos = found.end()
            if self.peek() not in ("", "-", ".", ",", " "):
                raise _Bad(f'"{_shown(found.group(0) + self.word())}" is not a weekday (Mon..Sun, or Monday..Sunday)')
            if low > day:
                raise _Bad(f"the weekday range {_WEEKDAYS[low]}..{_WEEKDAYS[day]} runs backwards",
                           f'"{_WEEKDAYS[day]},{_WEEKDAYS[low]}..Sun" or "Mon..Fri"')
            bits |= sum(1 << number for number in range(day if low < 0 else low, day + 1))
            if self.peek() in ("", " "):
                self.spaces()
                return bits
            low = self.weekday_separator(low, day)
            if self.peek() in ("", " "):
                if low >= 0:
                    raise _Bad(f'the weekday range "{_WEEKDAYS[low]}.." has no end', '"Mon..Fri"')
                self.spaces()
                return bits
            first = False

    def weekday_separator(self, low: int, day: int) -> int:
        """Step over what follows a weekday name; return where an open range starts (-1: none)."""
        if self.peek() == "-":
            raise _Bad('weekday ranges are written with "..", not "-"', f'"{_WEEKDAYS[day]}..Fri"')
        if self.peek() == ",":
            self.pos += 1
            return -1
        if self.peek(2) != ".." or low >= 0:
            raise _Bad("weekdays are separated by commas and ranges written with two dots",
                       '"Mon..Fri" or "Sat,Sun"')
        self.pos += 2
        return day

    def date(self) -> tuple[_Chain, _Chain, _Chain]:
        if self.peek() in ("", "@"):
            if self.peek() == "@":
                raise _Bad("@ timestamps (and cron's @daily) are not supported", '"daily" or "*-*-* 03:30:00"')
            return None, None, None
        start = self.pos
        first = self.chain("the year or month")
        if self.peek() in ("", ":"):  # it was the hour: there is no date
            self.pos = start
            return None, None, None
        self.date_separator(start)
        second = self.chain("the month or day")
        if self.peek() in ("", " "):
            self.spaces()
            return None, first, second
        self.date_separator(start)
        third = self.chain("the day")
        if self.peek() not in ("", " "):
            raise _Bad(f'"{_shown(self.text[start:])}" is not a date (YYYY-MM-DD, MM-DD, "*" for any)',
                       '"*-*-01 03:00:00"')
        self.spaces()
        return first, second, third

    def date_separator(self, start: int) -> None:
        if self.peek() == "~":
            raise _Bad('the "~" (days before the end of the month) is not supported',
                       '"*-*-01 03:00:00" (the first of every month)')
        if self.peek() != "-":
            shown = self.text[start:].split(" ", 1)[0]
            raise _Bad(f'"{_shown(shown)}" is not a date (YYYY-MM-DD, MM-DD, "*" for any) or a time (HH:MM)')
        self.pos += 1

    def time_of_day(self) -> tuple[_Chain, _Chain, _Chain]:
        if self.peek() == "":
            return _ZERO, _ZERO, _ZERO
        hour = self.chain("the hour")
        if self.peek() != ":":
            raise _Bad('the time is written HH:MM or HH:MM:SS, such as "03:30"')
        self.pos += 1
        minute = self.chain("the minutes")
        if self.peek() == "":
            return hour, minute, _ZERO
        if self.peek() != ":":
            raise _Bad('the time is written HH:MM or HH:MM:SS, such as "03:30"')
        self.pos += 1
        return hour, minute, self.chain("the seconds", usec=True)

    def chain(self, what: str, usec: bool = False) -> _Chain:
        if self.peek() == "*":
            self.pos += 1
            return (_Part(0, -1, _USEC),) if usec else None
        parts = [self.part(what, usec)]
        while self.peek() == ",":
            self.pos += 1
            parts.append(self.part(what, usec))
        if len(parts) > _MAX_LIST:
            raise _Bad(f"{what} lists more than {_MAX_LIST - 1} values")
        return tuple(parts)

    def part(self, what: str, usec: bool) -> _Part:
        start, stop, repeat = self.number(what, usec), -1, 0
        if self.peek(2) == "..":
            self.pos += 2
            stop, repeat = self.number(what, usec), (_USEC if usec else 1)
        if self.peek() == "/":
            self.pos += 1
            repeat = self.number(what, usec)
            if repeat == 0:
                raise _Bad(f'"/0" in {what} repeats nothing', '"*:0/15" (every 15 minutes)')
        elif usec and stop >= 0 and start + repeat > stop:  # systemd's own check, for seconds only
            raise _Bad(f"the range {start // _USEC}..{stop // _USEC} in {what} is empty or runs backwards")
        if self.peek() not in ("", " ", ",", "-", "~", ":"):
            raise _Bad(f'"{_shown(self.text[self.pos:])}" cannot follow a number in {what}')
        return _Part(start, stop, repeat)

    def number(self, what: str, usec: bool) -> int:
        found = _NUMBER.match(self.text, self.pos)
        if found is None and self.word().isalpha():
            raise _Bad(f'"{_shown(self.word())}" is not a weekday (Mon..Sun, Monday..Sunday) or a shorthand '
                       '(hourly, daily, weekly, monthly, ...)')
        if found is None:
            raise _Bad(f'"{_shown(self.word())}" is not a number or "*" in {what}')
        if len(found.group(0).lstrip("0")) > _MAX_DIGITS:
            raise _Bad(f"{what} has a number far too large")
        self.pos = found.end()
        if usec and self.peek() == "." and self.peek(2) != "..":
            raise _Bad("fractional seconds are not supported", '"*-*-* 03:30:15" (whole seconds)')
        return int(found.group(0)) * (_USEC if usec else 1)


_WEEKDAY_NUMBERS = {name.lower(): number for number, name in enumerate(_WEEKDAYS)}


# ---------------------------------------------------------------------------------------------------------
# Normalizing and checking: calendar_spec_normalize() and calendar_spec_valid(), with messages.

_FIELDS = (("year", _MIN_YEAR, _MAX_YEAR, 1), ("month", 1, 12, 1), ("day", 1, 31, 1), ("hour", 0, 23, 1),
           ("minute", 0, 59, 1), ("second", 0, 59, _USEC))


def _validated(spec: _Spec) -> _Spec:
    if spec.year and any(0 <= value < _CENTURY for part in spec.year for value in (part.start, part.stop)):
        raise _Bad("years are written with four digits (systemd reads 26 as 2026 and 89 as 1989)",
                   '"2027-01-01 03:00:00"')
    weekdays = 0 if spec.weekdays == _ALL_WEEKDAYS else spec.weekdays
    chains = [_normalized_chain(chain) for chain in (spec.year, spec.month, spec.day, spec.hour, spec.minute,
                                                      spec.usec)]
    for chain, (name, low, high, scale) in zip(chains, _FIELDS, strict=True):
        for part in chain or ():
            _check_part(part, name, low * scale, (high + 1) * scale - 1, scale)
    spec = _Spec(weekdays, *chains)
    _check_some_day_exists(spec)
    return spec


def _normalized_chain(chain: _Chain) -> _Chain:
    """Trim each range to a multiple of its repetition, drop repetitions that never repeat, sort, dedupe."""
    if chain is None:
        return None
    parts = set()
    for part in chain:
        start, stop, repeat = part.start, part.stop, part.repeat
        if stop > start and repeat > 0:
            stop -= (stop - start) % repeat
        if (stop > start and repeat > 0 and start + repeat > stop) or start == stop:
            stop, repeat = -1, 0
        parts.add(_Part(start, stop, repeat))
    return tuple(sorted(parts, key=lambda part: (part.start, part.stop, part.repeat)))


def _check_part(part: _Part, name: str, low: int, high: int, scale: int) -> None:
    """calendar_spec_valid() for one element; bounds and values are in the field's unit times scale."""
    shown = f"{part.start // scale}" + (f"..{part.stop // scale}" if part.stop >= 0 else "")
    shown += f"/{part.repeat // scale}" if part.repeat and not (part.stop >= 0 and part.repeat == scale) else ""
    limits = f"{low // scale}..{high // scale}"
    if not low <= part.start <= high or (part.stop >= 0 and not low <= part.stop <= high):
        raise _Bad(f'the {name} "{shown}" is outside {limits}')
    if part.repeat > high - low:
        raise _Bad(f'the repetition in the {name} "{shown}" is longer than {limits}')
    if part.stop >= 0 and part.start + part.repeat > part.stop:
        raise _Bad(f'the {name} range "{shown}" runs backwards: write the smaller value first')
    if part.stop < 0 and part.start + part.repeat > high:
        raise _Bad(f'the {name} "{shown}" never repeats ({part.start // scale}+{part.repeat // scale} is past '
                   f"{high // scale}; {part.start // scale} alone or a shorter repetition would do)")


def _values(chain: _Chain, low: int, high: int) -> set[int]:
    if chain is None:
        return set(range(low, high + 1))
    values: set[int] = set()
    for part in chain:
        last = part.stop if part.stop >= 0 else (high if part.repeat else part.start)
        values.update(range(part.start, last + 1, part.repeat or 1))
    return values


def _check_some_day_exists(spec: _Spec) -> None:
    """Refuse "*-02-30": systemd accepts it and never elapses; a schedule that never runs is a mistake."""
    years = _values(spec.year, _MIN_YEAR, _MAX_YEAR)
    leap = any(year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) for year in years)
    longest = {2: 29 if leap else 28, 4: 30, 6: 30, 9: 30, 11: 30}
    months, days = _values(spec.month, 1, 12), _values(spec.day, 1, 31)
    if not any(day <= longest.get(month, 31) for month in months for day in days):
        raise _Bad("no month it names has such a day, so it would never run", '"*-*-01 03:00:00" or "*-02-28"')


# ---------------------------------------------------------------------------------------------------------
# The normalized form: calendar_spec_to_string().


def _format(spec: _Spec) -> str:
    text = f"{_format_weekdays(spec.weekdays)} " if spec.weekdays else ""
    text += f"{_format_chain(spec.year, 4)}-{_format_chain(spec.month, 2)}-{_format_chain(spec.day, 2)} "
    return text + f"{_format_chain(spec.hour, 2)}:{_format_chain(spec.minute, 2)}:{_format_seconds(spec.usec)}"


def _format_weekdays(bits: int) -> str:
    """Runs of three or more days as Mon..Wed, shorter runs as Mon,Tue, as systemd writes them."""
    runs: list[str] = []
    day = 0
    while day < len(_WEEKDAYS):
        if not bits & (1 << day):
            day += 1
            continue
        end = day
        while end + 1 < len(_WEEKDAYS) and bits & (1 << (end + 1)):
            end += 1
        runs.append(_WEEKDAYS[day] if end == day else
                    f"{_WEEKDAYS[day]}{'..' if end > day + 1 else ','}{_WEEKDAYS[end]}")
        day = end + 1
    return ",".join(runs)


def _format_chain(chain: _Chain, width: int, scale: int = 1) -> str:
    if chain is None:
        return "*"
    texts = []
    for part in chain:
        text = f"{part.start // scale:0{width}d}"
        if part.stop > 0:
            text += f"..{part.stop // scale:0{width}d}"
        if part.repeat > 0 and not (part.stop > 0 and part.repeat == scale):
            text += f"/{part.repeat // scale}"
        texts.append(text)
    return ",".join(texts)


def _format_seconds(chain: _Chain) -> str:
    # Any element meaning "every second" makes systemd print the whole list as "*".
    if chain is None or _Part(0, -1, _USEC) in chain:
        return "*"
    return _format_chain(chain, 2, _USEC)


# ---------------------------------------------------------------------------------------------------------
# Elapses: find_next() of systemd, step by step, on a struct tm normalized by the C library's mktime().
#
# The struct tm is a list, for speed: year (in full), month (0..11), day, hour, minute, second, tm_isdst,
# then the microseconds find_next() carries beside it and the weekday (Monday 0) mktime() fills in.
_YEAR, _MON, _MDAY, _HOUR, _MIN, _SEC, _DST, _US, _WDAY = range(9)
_FLOOR = (0, 0, 1, 0, 0, 0)  # what a field restarts from (the year never does)
_WEEKDAY_STEP = -1
_AGAIN, _ONWARD, _NEVER = "again", "onward", "never"


class _OutOfRange(Exception):
    pass


class _Stuck(Exception):
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


def _next_usec(spec: _Spec, usec: int) -> int | None:
    """calendar_spec_next_usec(): the first elapse at or after usec + 1 µs, or None if there is none."""
    usec += 1
    local = time.localtime(usec // _USEC)
    start = [local[0], local[1] - 1, local[2], local[3], local[4], local[5], local[8], usec % _USEC, local[6]]
    found = _find_next(spec, start)
    if found is None:
        return None
    try:
        return _mktime(found) * _USEC + found[_US]
    except _OutOfRange:
        return None


def _find_next(spec: _Spec, start: list[int]) -> list[int] | None:
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
    raise _Stuck


def _round(spec: _Spec, steps: tuple[tuple[int, _Chain], ...], c: list[int], keep_dst: bool) -> str:
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


def _year_step(chain: _Chain, c: list[int]) -> str:
    changed, c[_YEAR] = _match(chain, c[_YEAR])
    if changed > 0:
        _reset_below(_YEAR, c)
    if changed < 0 or _within_bounds(c) <= 0:
        return _NEVER
    return _ONWARD


def _step(index: int, chain: _Chain, c: list[int]) -> str:
    """One field of find_next(): move it to its next matching value, or carry into the field above."""
    if index == _SEC:
        changed, value = _match(chain, c[_SEC] * _USEC + c[_US])
        c[_SEC], c[_US] = divmod(value, _USEC)  # the seconds keep the microseconds they matched with
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


def _match(chain: _Chain, value: int) -> tuple[int, int]:
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
    if c[_YEAR] > _MAX_YEAR:
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


# ---------------------------------------------------------------------------------------------------------
# Messages: the common mistakes get a suggestion of their own.


def _shown(text: str, limit: int = _SHOWN) -> str:
    """text as a message may quote it: printable, and not a pasted novel."""
    clean = "".join(char if char.isprintable() else "?" for char in text)
    return clean if len(clean) <= limit else clean[:limit] + "..."


def _refusal(text: str, reason: str, example: str | None = None) -> str:
    return f'"{_shown(text)}" is not a calendar expression opsctl understands: {reason}; write {example or _EXAMPLES}'


def _suggest(text: str, meaning: str = "") -> str | None:
    """The normalized form of text as a suggestion, if it parses; None otherwise (never a second diagnosis)."""
    try:
        spec = _parsed(text)
    except _Bad:
        return None
    return f'"{_format(spec)}"' + (f" ({meaning})" if meaning else "")


def _diagnose(text: str) -> str | None:
    for diagnosis in (_spaces_around, _other_spaces, _time_zone, _alias, _shorthand_with_time, _every, _cron,
                      _weekday_dash, _fraction):
        message = diagnosis(text)
        if message:
            return message
    return None


def _spaces_around(text: str) -> str | None:
    if text == text.strip():
        return None
    return _refusal(text, "it starts or ends with blank space, which systemd refuses",
                    _suggest(text.strip()) or f'"{_shown(text.strip())}"')


def _other_spaces(text: str) -> str | None:
    if not re.search(r"[^\S ]", text):
        return None
    return _refusal(text, "its parts are separated by tabs or line breaks; systemd takes spaces only",
                    _suggest(" ".join(text.split())))


def _time_zone(text: str) -> str | None:
    rest, _, zone = text.rpartition(" ")
    if not rest or not _is_time_zone(zone):
        return None
    return _refusal(text, f'it names a time zone ({_shown(zone)}), which opsctl does not support: schedules run '
                    "in the machine's local time zone, as a systemd timer without one does",
                    _suggest(rest.strip(), "in local time"))


def _is_time_zone(word: str) -> bool:
    if word.upper() in ("UTC", "GMT", "Z") or word in time.tzname:
        return True
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+)*", word):
        return False
    if "/" in word:
        return True
    try:
        ZoneInfo(word)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def _alias(text: str) -> str | None:
    wanted = _ALIASES.get(text.lower())
    if wanted is None:
        return None
    return _refusal(text, "opsctl takes each shorthand in one spelling only", f'"{wanted}"')


_SHORTHAND_MEANING = {"minutely": "every day", "hourly": "every day", "daily": "every day",
                      "weekly": "every Monday", "monthly": "on the first of every month",
                      "yearly": "every 1 January", "annually": "every 1 January",
                      "quarterly": "on the first day of every quarter",
                      "semiannually": "every 1 January and 1 July"}


def _shorthand_with_time(text: str) -> str | None:
    name, _, rest = text.partition(" ")
    name = name.lower()
    if name not in _SHORTHANDS or not rest.strip():
        return None
    alone = _format(_SHORTHANDS[name])
    clock = re.fullmatch(r"\s*([0-9]{1,2}):([0-9]{2})(?::([0-9]{2}))?\s*", rest)
    if clock is None:
        return _refusal(text, f'a shorthand such as "{name}" stands alone', f'"{name}"')
    hour, minute, second = int(clock.group(1)), clock.group(2), clock.group(3) or "00"
    date = alone.rsplit(" ", 1)[0] if name not in ("minutely", "hourly") else "*-*-*"
    at = f"{hour:02d}:{minute}" + (f":{second}" if second != "00" else "")
    suggestion = _suggest(f"{date} {hour:02d}:{minute}:{second}", f"{_SHORTHAND_MEANING[name]} at {at}")
    if suggestion is None:
        return None
    return _refusal(text, f'a shorthand such as "{name}" takes no time of day',
                    f'{suggestion} or "{name}" alone ({alone})')


_EVERY = re.compile(r"every\s*(?P<count>[0-9]*)\s*(?P<unit>s|sec|secs|seconds?|m|min|mins|minutes?|h|hours?|"
                    r"d|days?|w|weeks?|months?)", re.IGNORECASE)
_UNIT = {"s": "second", "m": "minute", "h": "hour", "d": "day", "w": "week"}


def _every(text: str) -> str | None:
    if not text.lower().startswith("every"):
        return None
    found = _EVERY.fullmatch(text.strip())
    if found is None:
        return _refusal(text, "it is an interval, and a schedule names the moments to run at",
                        '"*:0/5" (every 5 minutes), "hourly" or "*-*-* 03:30:00" (every day at 03:30)')
    count = int(found.group("count") or 1)
    unit = found.group("unit").lower()
    unit = "month" if unit.startswith("mo") else _UNIT[unit[0]]
    return _refusal(text, "it is an interval, and a schedule names the moments to run at",
                    _every_suggestion(count, unit))


_EVERY_ONE = {"minute": "minutely", "hour": "hourly", "day": "daily", "week": "weekly", "month": "monthly"}
# unit: (expression, how many fit in the unit above, the unit above)
_EVERY_SOME = {"second": ("*:*:0/{n}", 60, "minute"), "minute": ("*:0/{n}", 60, "hour"),
               "hour": ("0/{n}:00", 24, "day")}


def _every_suggestion(count: int, unit: str) -> str:
    if count == 1 and unit in _EVERY_ONE:
        return f'"{_EVERY_ONE[unit]}"'
    if unit in _EVERY_SOME and count < _EVERY_SOME[unit][1]:
        pattern, size, above = _EVERY_SOME[unit]
        # systemd counts from 0 in each minute, hour or day: 0/7 minutes is :00, :07 ... :56, then :00 again
        note = "" if size % count == 0 else f", counting again from 0 every {above}"
        shown = _suggest(pattern.format(n=count), f"every {count} {unit}s{note}" if count > 1 else f"every {unit}")
        if shown:
            return shown
    return '"hourly", "daily" or "*-*-* 00/6:00:00" (every 6 hours)'


_CRON_FIELD = re.compile(r"[0-9*][0-9*/,\-]*|[A-Za-z]{3}([,\-][A-Za-z]{3})*")
_CRON_DAYS = {str(number): name for number, name in enumerate(("Sun", *_WEEKDAYS[:-1], "Sun"))}


def _cron(text: str) -> str | None:
    fields = text.split()
    if len(fields) != _CRON_FIELDS or not all(_CRON_FIELD.fullmatch(item) for item in fields):
        return None
    minute, hour, day, month, weekday = (_cron_to_systemd(item, low) for item, low in zip(fields, "00110",
                                                                                             strict=True))
    days = "" if weekday == "*" else _cron_weekdays(weekday) + " "
    suggestion = _suggest(f"{days}*-{month}-{day} {hour}:{minute}:00")
    if suggestion and days and day != "*":
        suggestion += " (cron runs when either day field matches, systemd only when both do)"
    return _refusal(text, "cron lines are not calendar expressions",
                    suggestion or '"*-*-* 03:30:00" (cron\'s "30 3 * * *")')


def _cron_to_systemd(item: str, low: str) -> str:
    if item == "*":
        return "*"
    return item.replace("*/", f"{low}/").replace("-", "..")


def _cron_weekdays(item: str) -> str:
    return re.sub(r"[0-7]", lambda found: _CRON_DAYS[found.group(0)], item)


def _weekday_dash(text: str) -> str | None:
    fixed = re.sub(r"^([A-Za-z]{3,9})-([A-Za-z]{3,9})\b", r"\1..\2", text)
    suggestion = _suggest(fixed) if fixed != text else None
    if suggestion is None:
        return None
    return _refusal(text, 'weekday ranges are written with "..", not "-"', suggestion)


def _fraction(text: str) -> str | None:
    fixed = re.sub(r"(:[0-9]+)\.[0-9]+(?=$|,|/|\.\.)", r"\1", text)
    fixed = re.sub(r"(/[0-9]+)\.[0-9]+$", r"\1", fixed)
    suggestion = _suggest(fixed, "whole seconds") if fixed != text else None
    if suggestion is None:
        return None
    return _refusal(text, "fractional seconds are not supported", suggestion)


def _gives_up(calendar: Calendar, usec: int, moment: datetime) -> str:
    """What to say when systemd's own search loops: its timer would stop firing there."""
    listed = _listed(calendar._spec)
    example = _EXAMPLES
    try:
        if listed != calendar._spec and _next_usec(listed, usec) is not None:
            example = f'"{_format(listed)}" (the same moments, listed)'
    except _Stuck:
        pass
    return (f'systemd cannot compute when "{_shown(calendar.text)}" elapses after {moment.isoformat()}: its search '
            "loops (as when a repetition runs past the end of a day that changes to or from daylight saving time), "
            f"so its timer would stop; write {example}")


def _listed(spec: _Spec) -> _Spec:
    """spec with its month, day and hour repetitions written out as lists of values."""
    def listed(chain: _Chain, low: int, high: int) -> _Chain:
        if chain is None or not any(part.repeat for part in chain):
            return chain
        return tuple(_Part(value) for value in sorted(_values(chain, low, high)))
    return replace(spec, month=listed(spec.month, 1, 12), day=listed(spec.day, 1, 31),
                   hour=listed(spec.hour, 0, 23))
